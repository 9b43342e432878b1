// A relying party built on panva's openid-client (OpenID-certified), driven by
// tests/it/oidc_interop.rs against a running provider: Portcullis, or panva's
// oidc-provider (tests/oidc-provider/complete.mjs), which proves this script.
//
// It speaks in JSON lines: each step prints one object on stdout,
// {"step": NAME, ...}; where the test must act as the browser it prints what to
// visit and reads one line on stdin (the URL the provider sent the browser back to).
// The last line is {"step":"done"}, or {"step":"error","at":NAME,...} with exit code 1.
//
// Environment:
//   RP_ISSUER                  the issuer to discover (plain http allowed: loopback tests)
//   RP_STEPS                   comma-separated steps to run, in this order:
//                              code, userinfo, refresh, introspect, client_credentials,
//                              device, end_session (discovery always runs)
//   RP_CLIENT_ID, RP_CLIENT_SECRET       confidential code-flow client (client_secret_basic)
//   RP_REDIRECT_URI, RP_SCOPE            its redirect URI and scope
//   RP_POST_LOGOUT_REDIRECT_URI          for end_session
//   RP_SERVICE_CLIENT_ID, RP_SERVICE_CLIENT_SECRET, RP_SERVICE_SCOPE
//                                        client_credentials client
//   RP_DEVICE_CLIENT_ID, RP_DEVICE_SCOPE public device-flow client
import { createInterface } from 'node:readline';
import * as client from 'openid-client';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    throw new Error(`${name} is not set`);
  }
  return v;
};
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async () => {
  const { value, done } = await lines.next();
  if (done) {
    throw new Error('stdin closed before the test answered');
  }
  return value.trim();
};
// The claims a step reports: what the test asserts on, never a token's signature.
const pick = (obj, keys) => Object.fromEntries(keys.filter((k) => obj?.[k] !== undefined).map((k) => [k, obj[k]]));
const tokenFacts = (t) => ({
  token_type: t.token_type,
  scope: t.scope,
  expires_in: t.expiresIn(),
  has_refresh_token: typeof t.refresh_token === 'string',
  has_id_token: typeof t.id_token === 'string',
});

const steps = new Set(env('RP_STEPS', '').split(',').map((s) => s.trim()).filter(Boolean));
const issuer = new URL(env('RP_ISSUER'));
const insecure = issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : undefined;
const discover = (id, secret, auth) => client.discovery(issuer, id, secret, auth, insecure);

let at = 'discovery';
try {
  const needsWeb = ['code', 'userinfo', 'refresh', 'introspect', 'end_session'].some((s) => steps.has(s));
  const web = needsWeb
    ? await discover(env('RP_CLIENT_ID'), undefined, client.ClientSecretBasic(env('RP_CLIENT_SECRET')))
    : await discover('discovery-only');
  const meta = web.serverMetadata();
  say({ step: 'discovery', issuer: meta.issuer, metadata: meta });

  let tokens;
  let claims;
  if (steps.has('code')) {
    at = 'code';
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(web, {
      redirect_uri: env('RP_REDIRECT_URI'),
      scope: env('RP_SCOPE', 'openid profile email'),
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    say({ step: 'authorize', url: url.href });
    const back = new URL(await ask());
    tokens = await client.authorizationCodeGrant(web, back, {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    claims = tokens.claims();
    say({ step: 'code', ...tokenFacts(tokens), id_token_claims: claims, access_token: tokens.access_token });
  }
  if (steps.has('userinfo')) {
    at = 'userinfo';
    const info = await client.fetchUserInfo(web, tokens.access_token, claims.sub);
    say({ step: 'userinfo', userinfo: info });
  }
  if (steps.has('refresh')) {
    at = 'refresh';
    const before = tokens.refresh_token;
    const next = await client.refreshTokenGrant(web, before);
    say({
      step: 'refresh',
      ...tokenFacts(next),
      rotated: typeof next.refresh_token === 'string' && next.refresh_token !== before,
      id_token_claims: next.id_token ? next.claims() : null,
      access_token: next.access_token,
    });
    tokens = next;
  }
  if (steps.has('introspect')) {
    at = 'introspect';
    const info = await client.tokenIntrospection(web, tokens.access_token);
    say({ step: 'introspect', introspection: pick(info, ['active', 'sub', 'client_id', 'scope', 'token_type', 'exp', 'iss']) });
  }
  if (steps.has('client_credentials')) {
    at = 'client_credentials';
    const service = await discover(
      env('RP_SERVICE_CLIENT_ID'),
      undefined,
      client.ClientSecretBasic(env('RP_SERVICE_CLIENT_SECRET')),
    );
    const scope = process.env.RP_SERVICE_SCOPE;
    const t = await client.clientCredentialsGrant(service, scope ? { scope } : {});
    say({ step: 'client_credentials', ...tokenFacts(t), access_token: t.access_token });
  }
  if (steps.has('device')) {
    at = 'device';
    const device = await discover(env('RP_DEVICE_CLIENT_ID'), undefined, client.None());
    const started = await client.initiateDeviceAuthorization(device, {
      scope: env('RP_DEVICE_SCOPE', 'openid profile'),
    });
    say({
      step: 'device_authorization',
      ...pick(started, ['user_code', 'verification_uri', 'verification_uri_complete', 'expires_in', 'interval']),
    });
    const t = await client.pollDeviceAuthorizationGrant(device, started);
    say({ step: 'device', ...tokenFacts(t), id_token_claims: t.id_token ? t.claims() : null, access_token: t.access_token });
  }
  if (steps.has('end_session')) {
    at = 'end_session';
    const url = client.buildEndSessionUrl(web, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: env('RP_POST_LOGOUT_REDIRECT_URI'),
      state: 'bye-0123456789',
    });
    say({ step: 'end_session', url: url.href });
  }
  say({ step: 'done' });
  process.exit(0);
} catch (e) {
  say({
    step: 'error',
    at,
    name: e?.name,
    code: e?.code,
    error: e?.error,
    error_description: e?.error_description,
    status: e?.status,
    message: String(e?.message ?? e),
    cause: e?.cause ? String(e.cause?.message ?? e.cause) : undefined,
  });
  process.exit(1);
}
