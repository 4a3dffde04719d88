/** Build the browser artifacts once before the suite (the server serves them; browser tests load them). */
import { buildBrowser } from "../scripts/build-browser.js"

export default async function setup(): Promise<void> {
  await buildBrowser()
}
