package pool

// state is the pool's persisted state: its session bindings and cooldowns
// saved to storage and merged from other instances (SPEC section 14).
// Built by issue 13.
type stateSync struct{}
