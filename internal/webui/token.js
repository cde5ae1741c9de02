// token.js: the bearer-token form both consoles share (#token-form,
// #token-why, #token-forget, #token-button in their index.html). The token
// is kept for the browser tab only (sessionStorage). A console calls
// wapperToken.init(storageKey, changed) once; changed runs after the token
// is set or forgotten. wapperToken.headers(extra) adds the Authorization
// header; wapperToken.ask(why) shows the form with the server's reason.
'use strict';
window.wapperToken = (() => {
  const form = document.getElementById('token-form');
  let key = '';
  let token = '';

  function ask(why) {
    document.getElementById('token-why').textContent = why || '';
    form.hidden = false;
    form.elements.token.focus();
  }
  function set(value, changed) {
    token = value;
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
    form.reset();
    form.hidden = true;
    changed();
  }
  function init(storageKey, changed) {
    key = storageKey;
    token = sessionStorage.getItem(key) || '';
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      set(form.elements.token.value.trim(), changed);
    });
    document.getElementById('token-forget').addEventListener('click', () => set('', changed));
    document.getElementById('token-button').addEventListener('click', () =>
      form.hidden ? ask(token ? 'A token is set for this tab.' : 'No token set.') : (form.hidden = true));
  }
  function headers(extra) {
    const h = Object.assign({}, extra);
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }
  return { init, ask, headers };
})();
