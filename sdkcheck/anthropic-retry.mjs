// Checks that the official Anthropic TypeScript SDK honours llm_proxy's 429
// Retry-After: called while every credential of the pool cools for about a
// second, the SDK (maxRetries 2) must wait as told and then succeed.
//
// Driven by TestAnthropicSDKHonoursRetryAfter in integration/failover_test.go.
//
// Environment:
//   LLM_PROXY_BASE_URL    the proxy's base URL (required), e.g. http://localhost:9080
//   LLM_PROXY_API_KEY     client key sent to the proxy (default: "sdkcheck")
//   SDKCHECK_MODEL        model (default: claude-sonnet-4-5)
//   SDKCHECK_MAX_RETRIES  the SDK's maxRetries for the checked call (default 2)
//   SDKCHECK_PRIME=1      first make one call without retries, expected to fail
//                         with 429, which puts every credential into cooldown
//                         (the test's mock answers each credential's first
//                         request with 429 Retry-After: 1)
//
// Prints one JSON line: {"ok", "error", "text", "responses": [{"status",
// "retry_after", "x_should_retry", "error_type", "credential"}]}, the
// responses being every HTTP response the checked call saw, in order. Exits
// non-zero only when the script itself cannot run.

import Anthropic from "@anthropic-ai/sdk";

const baseURL = process.env.LLM_PROXY_BASE_URL;
if (!baseURL) {
  console.error("LLM_PROXY_BASE_URL is required");
  process.exit(2);
}
const model = process.env.SDKCHECK_MODEL || "claude-sonnet-4-5";
const maxRetries = Number.parseInt(process.env.SDKCHECK_MAX_RETRIES || "2", 10);

// Every response the SDK receives, recorded through a fetch wrapper.
let responses = [];
async function recordingFetch(input, init) {
  const res = await fetch(input, init);
  let errorType = "";
  if (res.status >= 400) {
    try {
      const body = await res.clone().json();
      errorType = body?.error?.type ?? "";
    } catch {
      // not JSON
    }
  }
  responses.push({
    status: res.status,
    retry_after: res.headers.get("retry-after") ?? "",
    x_should_retry: res.headers.get("x-should-retry") ?? "",
    error_type: errorType,
    credential: res.headers.get("x-mock-credential") ?? "",
  });
  return res;
}

const client = new Anthropic({
  apiKey: process.env.LLM_PROXY_API_KEY || "sdkcheck",
  baseURL,
  maxRetries,
  timeout: 30_000,
  fetch: recordingFetch,
});

const params = {
  model,
  max_tokens: 32,
  messages: [{ role: "user", content: "Say hello." }],
};

const result = { ok: false, error: "", text: "", responses: [] };

if (process.env.SDKCHECK_PRIME === "1") {
  try {
    await client.messages.create(params, { maxRetries: 0 });
    result.error = "priming call succeeded; expected a 429 that cools every credential";
    console.log(JSON.stringify(result));
    process.exit(0);
  } catch (err) {
    if (!(err instanceof Anthropic.RateLimitError)) {
      result.error = `priming call: unexpected error: ${err}`;
      console.log(JSON.stringify(result));
      process.exit(0);
    }
  }
  responses = [];
}

try {
  const msg = await client.messages.create(params);
  result.ok = true;
  result.text = (msg.content ?? [])
    .filter((b) => b.type === "text")
    .map((b) => b.text)
    .join("");
} catch (err) {
  result.error = String(err);
}
result.responses = responses;
console.log(JSON.stringify(result));
