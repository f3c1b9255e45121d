// An unmodified Express application: it listens as it would alone
// (PORT and HOST from the environment when run directly).
const express = require('express');

const body = 'Hello, World!\n';
const app = express();
app.get('/', (req, res) => {
  res.type('text/plain').send(body);
});
app.listen(Number(process.env.PORT) || 3000, process.env.HOST || '127.0.0.1');
