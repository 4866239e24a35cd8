package pool

// usageLedger counts tokens and requests per client label, credential and
// model over recent minutes (SPEC section 16). Built by issue 15.
type usageLedger struct{}
