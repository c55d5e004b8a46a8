// The admin-token box in the page header: kept in localStorage, sent as a Bearer header by api.js.
import { getToken, setToken } from "./api.js";

const form = document.getElementById("token-form");
const input = document.getElementById("token-input");
const clear = document.getElementById("token-clear");

input.value = getToken();
form.addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(input.value.trim());
  form.closest("details").open = false;
});
clear.addEventListener("click", () => {
  setToken("");
  input.value = "";
});
