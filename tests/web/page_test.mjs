// The page `veil serve` serves, end to end in headless Chromium (Debian's, driven by
// puppeteer-core): the model list at /, then one model's page: make keys, upload them, predict
// a row, read the label off the page. Fails on any console error (a Content-Security-Policy
// violation included). Usage: node page_test.mjs URL MODEL ROW_CSV EXPECTED_LABEL SCREENSHOT
import puppeteer from "puppeteer-core";

const [url, model, row, expected, screenshot] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: "new",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  // DevTools' network tracking would copy every request body (40 MB of keys) and slow the
  // upload several times over; failed loads still show as console errors.
  networkEnabled: false,
});
const problems = [];
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 1400 });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  await page.goto(`${url}/`, { waitUntil: "load" });
  await page.waitForSelector("#models a", { timeout: 30000 });
  const names = await page.$$eval("#models a", (links) => links.map((a) => a.textContent));
  if (!names.includes(model)) throw new Error(`the model list shows ${names.join(", ")}, not ${model}`);

  const start = Date.now();
  await page.goto(`${url}/models/${model}/`, { waitUntil: "load" });
  await page.waitForSelector("#predict", { timeout: 30000 });
  const ready = (Date.now() - start) / 1000;
  await page.$eval("#csv", (box, text) => { box.value = text; }, row);
  await page.click("#remember");
  await page.click("#predict");
  await page.waitForSelector("#result .label, #error", { timeout: 300000 });
  const error = await page.$eval("#error", (e) => e.textContent).catch(() => null);
  if (error) throw new Error(`the page shows an error: ${error}`);
  const label = await page.$eval("#result .label", (e) => e.textContent.trim());
  const seconds = (Date.now() - start) / 1000;
  const steps = await page.$$eval("#steps tr", (rows) => rows.slice(1).map((r) => [...r.children].map((c) => c.textContent).join(" | ")));
  const progress = await page.$eval("#progress", (p) => p.value);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`page: ${model} labelled the row ${label}; the form was ready after ${ready.toFixed(1)} s, the answer shown after ${seconds.toFixed(1)} s`);
  for (const s of steps) console.log(`  ${s}`);
  if (label !== expected) throw new Error(`the page says label ${label}, the C++ client ${expected}`);
  if (progress !== 1) throw new Error(`the key progress bar ended at ${progress}`);

  // The keys were kept in the browser: a second visit predicts without making or sending any.
  const again = Date.now();
  await page.goto(`${url}/models/${model}/`, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("key-status")?.textContent.startsWith("keys kept in this browser"),
                             { timeout: 30000 });
  await page.$eval("#csv", (box, text) => { box.value = text; }, row);
  await page.click("#predict");
  await page.waitForSelector("#result .label, #error", { timeout: 300000 });
  const againError = await page.$eval("#error", (e) => e.textContent).catch(() => null);
  if (againError) throw new Error(`the second visit shows an error: ${againError}`);
  const againLabel = await page.$eval("#result .label", (e) => e.textContent.trim());
  const againSteps = await page.$$eval("#steps tr", (rows) => rows.slice(1).map((r) => r.children[0].textContent));
  console.log(`second visit, keys kept in the browser: label ${againLabel} after ${((Date.now() - again) / 1000).toFixed(1)} s`);
  if (againLabel !== expected) throw new Error(`the second visit says label ${againLabel}, the C++ client ${expected}`);
  if (againSteps.some((s) => s.startsWith("make keys") || s.startsWith("upload")))
    throw new Error(`the second visit made or sent keys again: ${againSteps.join("; ")}`);
  await page.click("#forget-keys");
  await page.waitForFunction(() => document.getElementById("key-status")?.textContent === "kept keys forgotten");

  // Kept under a passphrase: the next visit unlocks them with it.
  await page.goto(`${url}/models/${model}/`, { waitUntil: "load" });
  await page.waitForSelector("#predict", { timeout: 30000 });
  await page.$eval("#csv", (box, text) => { box.value = text; }, row);
  await page.click("#remember");
  await page.type("#passphrase", "correct horse battery");
  await page.click("#predict");
  await page.waitForFunction(() => document.getElementById("key-status")?.textContent.endsWith("under your passphrase"),
                             { timeout: 300000 });
  await page.goto(`${url}/models/${model}/`, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("key-status")?.textContent.includes("sealed"), { timeout: 30000 });
  await page.type("#passphrase", "correct horse battery");
  await page.click("#unlock-keys");
  await page.waitForFunction(() => document.getElementById("key-status")?.textContent.startsWith("keys kept in this browser ("),
                             { timeout: 30000 });
  await page.$eval("#csv", (box, text) => { box.value = text; }, row);
  await page.click("#predict");
  await page.waitForSelector("#result .label, #error", { timeout: 300000 });
  const unlockedLabel = await page.$eval("#result .label", (e) => e.textContent.trim()).catch(() => null);
  if (unlockedLabel !== expected) throw new Error(`after unlocking the kept keys the page says ${unlockedLabel}`);
  console.log("kept under a passphrase and unlocked: same label");
  if (problems.length) throw new Error(`the browser reported:\n${problems.join("\n")}`);
} finally {
  await browser.close();
}
