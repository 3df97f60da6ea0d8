// The local origin of scripts/bench.sh's forward-path section: a tiny node http server answering
// every request with a small JSON body. Runs in its own process (so its CPU time can be read
// apart from the bench's) and prints its URL on the first line of stdout.
import http from 'node:http';

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const body = JSON.stringify({ origin: 'ok', method: req.method, url: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
