/** Secrets registered here are masked in every log line and error message. */
const secrets = new Set<string>();

/** Registers a secret (API key, password) so `redact` masks it everywhere. */
export function registerSecret(value: string | undefined): void {
  // Very short values would mask ordinary words; real keys and passwords are longer.
  if (value && value.length >= 4) secrets.add(value);
}

/** Masks registered secrets and the password and apikey parts of URLs in `text`. */
export function redact(text: string): string {
  let out = text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)[^@\s/]*@/gi, "$1***@")
    .replace(/([?&](?:apikey|api_key|password|token)=)[^&#\s"']*/gi, "$1***");
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.replaceAll(secret, "***");
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret && out.includes(encoded)) out = out.replaceAll(encoded, "***");
  }
  return out;
}

/** A URL as it may be shown: credentials and key parameters masked. */
export function redactUrl(url: string | URL): string {
  return redact(String(url));
}
