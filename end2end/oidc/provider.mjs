// A real OpenID provider for Gantry's tests: `oidc-provider` (OpenID
// certified) on a loopback port, with its development login form (any login,
// any password) and a few known people whose `groups` claim maps to roles.
//
//   node end2end/oidc/provider.mjs <port> <redirect-uri>[,<redirect-uri>...]
//
// Prints `ready <issuer>` once listening. For the refusal tests it can forge
// the ID token the token endpoint returns, re-signed with its own key so only
// the named property is wrong: POST /test/forge?mode=signature|audience|
// nonce|expired|no_auth_time|none (no_auth_time: a provider that does not say
// when the person authenticated).
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, redirects] = [Number(process.argv[2]), process.argv[3] ?? ''];
if (!port || !redirects) {
  console.error('usage: provider.mjs <port> <redirect-uri>[,...]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// Who is who: the `groups` claim of each login.
const GROUPS = {
  alice: ['gantry-admin'],
  dave: ['shop:developer', 'unrelated-group'],
  tess: ['tester'],
};

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'gantry',
      client_secret: 'gantry-test-secret',
      redirect_uris: redirects.split(','),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true, methods: ['S256'] },
  scopes: ['openid', 'profile', 'email'],
  // `nickname` stands for the person's forge account (auth.forge_login_claim).
  claims: { openid: ['sub'], profile: ['name', 'groups', 'nickname'], email: ['email'] },
  // Put the scope's claims in the ID token, where Gantry reads the roles.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['gantry-test-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: id, nickname: `${id}-gh`, email: `${id}@example.com`, groups: GROUPS[id] ?? [] };
      },
    };
  },
});
provider.proxy = false;

let forge = 'none';

// Test control, and the forging of the token endpoint's ID token.
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/forge') {
    forge = ctx.query.mode ?? 'none';
    ctx.body = { forge };
    return;
  }
  await next();
  if (ctx.path !== '/token' || forge === 'none' || !ctx.body || !ctx.body.id_token) return;
  const [header, payload, signature] = ctx.body.id_token.split('.');
  if (forge === 'signature') {
    const flipped = signature.startsWith('A') ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
    ctx.body = { ...ctx.body, id_token: `${header}.${payload}.${flipped}` };
    return;
  }
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  if (forge === 'audience') claims.aud = 'someone-else';
  if (forge === 'nonce') claims.nonce = 'not-the-nonce-gantry-sent';
  if (forge === 'no_auth_time') delete claims.auth_time;
  if (forge === 'expired') {
    claims.iat = now - 7200;
    claims.exp = now - 3600;
  }
  const token = await new jose.SignJWT(claims)
    .setProtectedHeader(JSON.parse(Buffer.from(header, 'base64url').toString()))
    .sign(privateKey);
  ctx.body = { ...ctx.body, id_token: token };
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
