// Entry page: keeps the token in this browser (localStorage) and opens a view.
import { registerServiceWorker, setupLangSelect } from "./common.js";

registerServiceWorker();
setupLangSelect(document.getElementById("lang"));
const input = document.getElementById("token");
input.value = localStorage.getItem("ioe.token") || "";
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("ioe.token", input.value.trim());
  location.href = event.submitter?.value || "/member";
});
