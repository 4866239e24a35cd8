package selector_test

import (
	"fmt"
	"strings"

	"github.com/caddy-llm-proxy/llmproxy/internal/selector"
)

func ExampleNew() {
	strategy, err := selector.New("weighted_round_robin")
	if err != nil {
		panic(err)
	}
	set := selector.NewSet("anthropic|claude-sonnet-4-5", []selector.Candidate{
		{ID: "a", Weight: 5},
		{ID: "b", Weight: 1},
		{ID: "c", Weight: 1},
		{ID: "backup", Priority: -1, Weight: 1}, // only when a, b and c are all unavailable
	})
	st := selector.NewState() // one per pool, kept across reloads
	var picks []string
	for range 7 {
		i := strategy.Pick(st, &selector.Request{Set: set})
		picks = append(picks, set.At(i).ID)
	}
	fmt.Println(strings.Join(picks, " "))

	_, err = selector.New("random")
	fmt.Println(err)
	// Output:
	// a a b a c a a
	// unknown strategy "random" (allowed: round_robin, fill_first, weighted_round_robin, rendezvous)
}
