/**
 * Keeps credentials embedded in URLs (`https://user:token@host/…`) out of
 * everything the server writes: every log line, and the task fields an API
 * answer carries. New tasks cannot have them (RepoUrlSchema refuses them);
 * this catches the rest — a git error quoting a URL, a row from before.
 *
 * The userinfo of any `scheme://userinfo@` becomes `***`, except a bare ssh
 * user name (`ssh://git@host`), which names an account, not a secret.
 */

// Userinfo runs to the last "@" before the path; it cannot hold "/", whitespace or a JSON quote.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*):\/\/([^\s/?#"'\\<>]*)@/gi;

export function scrubCredentials(text: string): string {
  if (!text.includes("@")) return text;
  return text.replace(URL_USERINFO, (whole, scheme: string, userinfo: string) =>
    scheme.toLowerCase() === "ssh" && !userinfo.includes(":") ? whole : `${scheme}://***@`,
  );
}
