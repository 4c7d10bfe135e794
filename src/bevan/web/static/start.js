// Starts the NHS.UK frontend's components. A file of its own: the pages' Content
// Security Policy allows no inline script.
import { initAll } from "/assets/vendor/nhsuk/nhsuk-frontend.min.js";

document.body.classList.add("js-enabled", "nhsuk-frontend-supported");
initAll();
