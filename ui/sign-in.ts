/** The sign-in form: the token goes to /ui/session once; the agent answers with a session cookie. */
const form = document.getElementById('sign-in') as HTMLFormElement;
const error = document.getElementById('sign-in-error') as HTMLElement;
form.addEventListener('submit', (e) => {
  e.preventDefault();
  const token = (document.getElementById('token') as HTMLInputElement).value;
  void fetch('/ui/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  }).then(async (res) => {
    if (res.ok) location.reload();
    else error.textContent = ((await res.json()) as { message?: string }).message ?? `HTTP ${res.status}`;
  });
});
