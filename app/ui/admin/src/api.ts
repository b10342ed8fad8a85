/**
 * The admin API as the dashboard calls it: every request carries the operator's token in the
 * Authorization header (never in a URL), and every answer is either the JSON body or an
 * `ApiFailure` with the API's own sentence.
 */

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** The route is not deployed (yet): the page shows "no data" rather than an error. */
  get missing(): boolean {
    return this.status === 404 || this.status === 405;
  }
}

export type Json = Record<string, unknown>;

export async function call(
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Json> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiFailure(0, "network", "The service did not answer (network error).");
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = isObject(parsed) ? parsed : {};
    const message =
      typeof error.message === "string" ? error.message : `HTTP ${response.status}`;
    const code = typeof error.error === "string" ? error.error : "http_error";
    throw new ApiFailure(response.status, code, message);
  }
  if (!isObject(parsed)) throw new ApiFailure(response.status, "bad_json", "The answer was not JSON.");
  return parsed;
}

export function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

export function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}
