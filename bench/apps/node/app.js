// An unmodified node:http application: it listens as it would alone
// (PORT and HOST from the environment when run directly).
const http = require('node:http');

const body = 'Hello, World!\n';
http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.env.PORT) || 3000, process.env.HOST || '127.0.0.1');
