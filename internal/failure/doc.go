// Package failure decides what one upstream outcome means for the
// credential that produced it and for the client request being served.
//
// [Classify] maps a response (or a transport error) to a [Verdict]: pass
// the response through ([Success]), return it to the client untouched
// ([Return]), cool the credential down and try the next one ([Failover]), or
// stop because the client went away ([Stop]). Its rule is that a client
// request can cool a credential only through an upstream answer about the
// credential (authentication, quota, rate limit, overload, outage), never
// through one about the request itself (an unknown path, a resource that
// does not exist, malformed or oversized input): every client may be
// hostile, and what one sends must not shut a credential to the others.
//
// [ResetHint] reads the reset hints upstream providers attach to rate-limit
// responses (Retry-After, retry-after-ms, Anthropic, OpenAI and Gemini
// formats) so that a credential is cooled exactly as long as the provider
// asks. [Policy] holds the cooldown durations of the `cooldown`
// configuration block, and [Policy.Cooldown] is all the cooldown
// arithmetic: the deadline a verdict sets and the backoff ladder for rate
// limits that come without a hint. Callers only store what it returns.
//
// Every function takes the current time as an argument; nothing in this
// package reads the clock or sleeps.
package failure
