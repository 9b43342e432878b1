// panva's oidc-provider (OpenID-certified) in its default configuration, for
// tests/it/oauth_node.rs: claims requested by scope (email, profile) are released only
// from UserInfo, as OpenID Connect Core 5.4 has it for a code flow. Only what a
// provider cannot do without is set: the account store, the one client (Portcullis),
// and the claims the `email` and `profile` scopes stand for. Interactions are the
// built-in development ones (a login form taking any name, then a consent form), which
// the test submits over plain HTTP.
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI. Listens on an
// ephemeral loopback port and prints `issuer=<url>` once it accepts requests.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { findAccount } from './accounts.mjs';

const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: need('OIDC_CLIENT_ID'),
      client_secret: need('OIDC_CLIENT_SECRET'),
      redirect_uris: [need('OIDC_REDIRECT_URI')],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    // Whoever logs in at the development login form: `<login>@example.org`, verified.
    findAccount,
    cookies: { keys: ['portcullis-test-only-cookie-key'] },
  });
  server.on('request', provider.callback());
  console.log(`issuer=${issuer}`);
});
