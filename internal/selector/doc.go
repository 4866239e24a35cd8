// Package selector chooses which upstream credential serves a request.
//
// A [Set] is the immutable, priority-sorted list of the credentials eligible
// for one pool and model, built once per credential-set change and shared by
// concurrent requests. A [Strategy] (round robin, fill first, smooth weighted
// round robin or weighted rendezvous hashing) picks among the available
// candidates of the highest priority tier that has any. [Affinity] wraps a
// Strategy with what ties a request to one credential: a request that
// refers to a stored resource (an OpenAI response, an Anthropic message
// batch) goes to the credential that created it, and a conversation keeps
// using one credential for as long as it stays available, which keeps the
// provider's prompt cache warm. [Steer] wraps a Strategy so that new
// sessions avoid credentials whose upstream reported a usage window within
// quota_headroom of its limit, while their tier has one with more room
// (bindings are left alone). [State] holds what the selector remembers
// between requests and across config reloads for one pool: the
// strategies' cursors and weights, and the resource pins.
//
// Costs per pick, n being the size of the chosen tier:
//
//   - affinity hit: O(1), no allocation;
//   - round_robin: amortised O(1) while most candidates are available;
//   - fill_first: O(k), k being the number of unavailable candidates ahead
//     of the first available one;
//   - weighted_round_robin: O(n), under a per-Set-key mutex;
//   - rendezvous: O(n), lock free;
//   - Steer: the wrapped strategy's cost, plus a scan of the top tier up to
//     its first available candidate with room.
package selector
