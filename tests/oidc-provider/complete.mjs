// panva's oidc-provider (OpenID-certified) with every capability this repository
// compares Portcullis with: code + PKCE, refresh, client credentials, introspection,
// revocation, the device flow and RP-initiated logout, on the default in-memory
// adapter. bench/harness.rs measures it beside Portcullis (bench/provider.rs), and
// tests/it/oidc_interop.rs proves tests/openid-client/rp.mjs against it, so that a
// failure of that script against Portcullis is Portcullis's. Interactions are the
// built-in development ones (a login form taking any name, then a consent form).
//
// Clients (secrets are test-only constants):
//   rp-web     confidential, client_secret_basic, authorization_code + refresh_token,
//              redirect URI OP_REDIRECT_URI, post-logout redirect OP_POST_LOGOUT_URI
//   rp-service confidential, client_secret_basic, client_credentials
//   rp-device  public (none), device_code + refresh_token
// Listens on an ephemeral loopback port and prints `issuer=<url>` once it accepts
// requests.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { findAccount } from './accounts.mjs';

const WEB_SECRET = 'rp-web-secret-0123456789abcdef0123456789';
const SERVICE_SECRET = 'rp-service-secret-0123456789abcdef01234';

const redirect = process.env.OP_REDIRECT_URI || 'http://127.0.0.1/callback';
const postLogout = process.env.OP_POST_LOGOUT_URI || 'http://127.0.0.1/signed-out';

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'rp-web',
        client_secret: WEB_SECRET,
        redirect_uris: [redirect],
        post_logout_redirect_uris: [postLogout],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'rp-service',
        client_secret: SERVICE_SECRET,
        redirect_uris: [],
        grant_types: ['client_credentials'],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'rp-device',
        redirect_uris: [],
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        token_endpoint_auth_method: 'none',
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'api'],
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      deviceFlow: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    // Like Portcullis's first-party clients: a refresh token whenever the client may
    // use one, without offline_access (which this provider grants only with
    // prompt=consent).
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    // Like Portcullis: every refresh rotates the refresh token.
    rotateRefreshToken: true,
    // Whoever logs in at the development login form: `<login>@example.org`, verified.
    findAccount,
    cookies: { keys: ['portcullis-test-only-cookie-key'] },
  });
  // The development interactions warn on every start; nothing else is printed.
  server.on('request', provider.callback());
  console.log(`issuer=${issuer}`);
});
