// Tests only: a real OpenID provider (the certified `oidc-provider` package) for the citizen sign-in tests.
//
// It listens on a free loopback port and prints {"issuer": ...} as one JSON line; the test then writes one
// JSON line on stdin, {"redirect_uri": ...} (the app's port is known only once the app serves), and the
// provider answers from then on and prints {"ready": true}. Until then every request answers 503.
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET (the registered confidential client), OIDC_ACCOUNTS (a JSON
// object: account name -> citizen ID, put in the ID token's `citizen_id` claim; `sub` is the account name).
// Sign-in is oidc-provider's development login page (devInteractions): any password, a known account name.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import Provider from 'oidc-provider';

const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');
if (!clientId || !clientSecret) {
  console.error('OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are required');
  process.exit(2);
}

// A signing key made for this run: nothing to leak, and a token signed by any other key must be refused.
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

let handler = null;
const server = createServer((req, res) => {
  if (handler === null) {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('not configured yet');
    return;
  }
  handler(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.once('line', (line) => {
    const { redirect_uri: redirectUri } = JSON.parse(line);
    const provider = new Provider(issuer, {
      clients: [{
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      }],
      jwks: { keys: [{ ...signingKey, kid: 'test-key', alg: 'RS256', use: 'sig' }] },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      pkce: { required: () => true },
      scopes: ['openid', 'citizen'],
      claims: { openid: ['sub'], citizen: ['citizen_id'] },
      // The citizen ID goes into the ID token itself (not only the userinfo answer).
      conformIdTokenClaims: false,
      async findAccount(_ctx, id) {
        if (!Object.hasOwn(accounts, id)) return undefined;
        return { accountId: id, async claims() { return { sub: id, citizen_id: accounts[id] }; } };
      },
      // govshare is a first-party client: no consent screen after the login (oidc-provider's "skip consent" recipe).
      async loadExistingGrant(ctx) {
        const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
        if (grantId) return ctx.oidc.provider.Grant.find(grantId);
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        grant.addOIDCScope('openid citizen');
        await grant.save();
        return grant;
      },
    });
    provider.on('server_error', (_ctx, error) => console.error('server_error', error));
    handler = provider.callback();
    process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  });
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
