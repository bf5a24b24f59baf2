import { startServer, launchBrowser, openPage } from './helpers.mjs';
const server = await startServer();
const b = await launchBrowser();
try {
  for (const [name, vp, scheme] of [['wide', {width:1280,height:800}, 'light'], ['phone', {width:375,height:740}, 'light'], ['dark', {width:1280,height:800}, 'dark'], ['mid', {width:820,height:1000}, 'light'], ['xl', {width:1600,height:900}, 'light']]) {
    const { page, problems } = await openPage(b.context, `${server.url}/`, { viewport: vp });
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForFunction(() => [...document.querySelectorAll('#watchlist-body svg.spark')].every((s) => Number(s.dataset.points) >= 25), null, { timeout: 15000 });
    await page.click('#row-AAPL');
    await page.waitForTimeout(800);
    await page.mouse.move(0,0);
    await page.screenshot({ path: `/tmp/shot-${name}.png`, fullPage: name === 'phone' || name === 'mid' });
    console.log(name, problems);
    await page.close();
  }
} finally { await b.close(); await server.stop(); }
