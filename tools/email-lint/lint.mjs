// digest's client lint: reads one HTML email on stdin, prints JSON findings per email client.
//
//   node lint.mjs CLIENT... < issue.html      (caniemail names: gmail.ios, outlook.windows...)
//
// The checks are caniemail.com's data as packaged by @jsx-email/doiuse-email. Each client is
// checked on its own so every finding is filed under the client it concerns. Output:
//   {"tool": "@jsx-email/doiuse-email 1.0.4",
//    "clients": {"outlook.windows": {"errors": {"@media": 1, "outline": 12}, "warnings": {...}}, ...}}
// where an error is a feature the client does not support and a warning one it supports only
// in part, each with the number of places it is used. digest/issue/lint.py runs this script; it exits 2 on bad input.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { doIUseEmail } from '@jsx-email/doiuse-email';

// "`outline` is not supported by `outlook.windows`" -> "outline"
const feature = (message) => (/^`(.+?)`/.exec(message) ?? [null, message])[1];
const tally = (messages) => {
  const counts = {};
  for (const message of messages) counts[feature(message)] = (counts[feature(message)] ?? 0) + 1;
  return counts;
};

const version = createRequire(import.meta.url)('@jsx-email/doiuse-email/package.json').version;
const html = readFileSync(0, 'utf8');
if (!html.trim()) {
  process.stderr.write('no HTML on stdin\n');
  process.exit(2);
}
const clients = process.argv.slice(2);
if (!clients.length) {
  process.stderr.write('name the clients to check, e.g. node lint.mjs gmail.ios outlook.windows\n');
  process.exit(2);
}
const out = { tool: `@jsx-email/doiuse-email ${version}`, clients: {} };
for (const client of clients) {
  const result = doIUseEmail(html, { emailClients: [client] });
  out.clients[client] = {
    errors: tally(result.success ? [] : result.errors),
    warnings: tally(result.warnings),
  };
}
process.stdout.write(`${JSON.stringify(out)}\n`);
