// Builds the console's vendored assets from the pinned packages in package-lock.json:
//   src/nudgeflow/web/console/static/vendor/console-vendor.js  (window.NFVendor, minified IIFE)
//   src/nudgeflow/web/console/static/vendor/uPlot.min.css
//   src/nudgeflow/web/console/static/vendor/LICENSES.txt       (every bundled package's licence)
//   tests/console/vendor/axe.min.js + LICENSES.txt             (axe-core: the tests' accessibility runs only)
// The outputs are committed, so neither installing nor running Nudgeflow needs Node. See README.md.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const vendorDir = join(repo, "src", "nudgeflow", "web", "console", "static", "vendor");
const testVendorDir = join(repo, "tests", "console", "vendor");
const modules = join(here, "node_modules");

mkdirSync(vendorDir, { recursive: true });
mkdirSync(testVendorDir, { recursive: true });

const result = await build({
  entryPoints: [join(here, "entry.mjs")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  // Licences live in LICENSES.txt beside the bundle (the banner says so), not scattered through it.
  legalComments: "none",
  banner: { js: "/* Nudgeflow console vendor bundle, built by scripts/console_assets/build.mjs. The licences of the packages it contains are in LICENSES.txt beside this file. */" },
  metafile: true,
  outfile: join(vendorDir, "console-vendor.js"),
  logLevel: "warning",
});

// The packages whose code is in the bundle, from esbuild's own record of its inputs: this lists
// the transitive ones (lezer, style-mod, ...) as well, and nothing that was tree-shaken away whole.
function packageOf(input) {
  const parts = input.split("node_modules/")[1]?.split("/");
  if (!parts) return null;
  return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}
const bundled = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const name = packageOf(input);
  if (name) bundled.add(name);
}

function licenceText(name) {
  const dir = join(modules, name);
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  if (!file) throw new Error(`${name} ships no licence file: add its text by hand before vendoring it`);
  return readFileSync(join(dir, file), "utf8").trim();
}

function licences(names, heading) {
  const parts = [heading];
  for (const name of [...names].sort()) {
    const meta = JSON.parse(readFileSync(join(modules, name, "package.json"), "utf8"));
    parts.push(`==== ${name}@${meta.version} (${meta.license})\n\n${licenceText(name)}\n`);
  }
  return parts.join("\n\n");
}

writeFileSync(
  join(vendorDir, "LICENSES.txt"),
  licences(
    bundled,
    "The packages bundled into console-vendor.js and uPlot.min.css, with their licences.\n" +
      "Built by scripts/console_assets/build.mjs from the versions pinned in its package-lock.json.",
  ),
);
copyFileSync(join(modules, "uplot", "dist", "uPlot.min.css"), join(vendorDir, "uPlot.min.css"));

// axe-core is for the browser tests only: it lives under tests/, never in the installed package.
copyFileSync(join(modules, "axe-core", "axe.min.js"), join(testVendorDir, "axe.min.js"));
writeFileSync(
  join(testVendorDir, "LICENSES.txt"),
  licences(["axe-core"], "axe.min.js (the browser tests' accessibility checks) and its licence.") +
    "\n\n" +
    readFileSync(join(modules, "axe-core", "LICENSE-3RD-PARTY.txt"), "utf8").trim() +
    "\n",
);

const size = result.metafile.outputs[Object.keys(result.metafile.outputs)[0]].bytes;
console.log(`console-vendor.js: ${size} bytes from ${bundled.size} packages: ${[...bundled].sort().join(", ")}`);
