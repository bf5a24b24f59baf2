import { startServer, launchBrowser, openPage } from '/work/main/tests/browser/helpers.mjs';
const server = await startServer();
const b = await launchBrowser();
try {
  const { page, problems } = await openPage(b.context, null);
  page.on('console', m => console.log('console', m.type(), m.text()));
  await page.addInitScript(() => { window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`)); });
  const csp = `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://127.0.0.1:${server.port}`;
  await page.route(`${server.url}/`, async (route) => { const res = await route.fetch(); await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': csp } }); });
  await page.goto(`${server.url}/`);
  await new Promise(r => setTimeout(r, 2000));
  console.log(await page.evaluate(() => window.__csp), problems);
  console.log(await page.evaluate(() => [window.tickstream?.client.state, document.querySelector('#row-AAPL .c-last')?.textContent]));
} finally { await b.close(); await server.stop(); }
