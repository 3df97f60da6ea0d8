// A stand-in for the platform's origin server, for scripts/dev.sh: answers every request with
// what the gateway told it (method, path, the X-Edgeward-* identity), so a newcomer can see a
// partner call go through. Not for production. Usage: node scripts/dev-origin.mjs [port]
import http from 'node:http';

const port = Number(process.argv[2] ?? 8788);
http
  .createServer((req, res) => {
    let length = 0;
    req.on('data', (c) => (length += c.length));
    req.on('end', () => {
      const identity = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-edgeward-') && k !== 'x-edgeward-identity'));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        origin: 'edgeward dev origin stand-in',
        method: req.method,
        path: req.url.split('?')[0],
        body_bytes: length,
        identity,
        identity_jwt: req.headers['x-edgeward-identity'] ? 'present (verify it against /.well-known/jwks.json)' : 'absent',
      }, null, 2) + '\n');
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`dev origin stand-in on http://127.0.0.1:${port}`));
