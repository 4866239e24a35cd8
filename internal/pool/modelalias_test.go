package pool

import (
	"slices"
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

func eligibleIDs(p *Pool, model string) []string {
	e := p.Eligible(apifamily.Route{Family: apifamily.OpenAI}, model)
	var got []string
	for i := 0; i < e.Set.Len(); i++ {
		got = append(got, e.Set.At(i).ID)
	}
	slices.Sort(got)
	return got
}

func TestEligibleExclusionsAndAliases(t *testing.T) {
	p := Acquire("pool-test-model-alias")
	defer Release("pool-test-model-alias")
	p.SetMembers([]*auth.Auth{
		rec("all", "openai", func(a *auth.Auth) { a.ExcludedModels = []string{"*-opus*"} }),
		rec("narrow", "openai", func(a *auth.Auth) {
			a.Models = []string{"gpt-*"}
			a.ExcludedModels = []string{"gpt-4*"}
			a.ModelAlias = map[string]string{"Fast": "local/fast-v2", "gpt-4o": "gpt-4o-2024"}
		}),
	}, nil)
	for _, tc := range []struct {
		model string
		want  []string
	}{
		{"gpt-5", []string{"all", "narrow"}},
		{"gpt-4.1", []string{"all"}},              // excluded on narrow
		{"gpt-4o", []string{"all", "narrow"}},     // an alias key beats the exclusion
		{"fast", []string{"all", "narrow"}},       // alias keys ignore case; not in narrow's models
		{"claude-opus-4", []string{"narrow"}[:0]}, // excluded on all, not in narrow's models
		{"CLAUDE-OPUS-4", []string{"narrow"}[:0]}, // exclusions ignore case
		{"local/fast-v2", []string{"all"}},        // upstream names are not client names
	} {
		if got := eligibleIDs(p, tc.model); !slices.Equal(got, tc.want) {
			t.Errorf("%s: eligible %v, want %v", tc.model, got, tc.want)
		}
	}

	// A new record that changes only the exclusions or the aliases
	// changes the eligible sets.
	p.SetMembers([]*auth.Auth{
		rec("all", "openai"),
		rec("narrow", "openai", func(a *auth.Auth) {
			a.Models = []string{"gpt-*"}
			a.ExcludedModels = []string{"gpt-4*"}
			a.ModelAlias = map[string]string{"gpt-4o": "gpt-4o-2024"}
		}),
	}, nil)
	if got := eligibleIDs(p, "claude-opus-4"); !slices.Equal(got, []string{"all"}) {
		t.Errorf("after dropping the exclusion: %v", got)
	}
	if got := eligibleIDs(p, "fast"); !slices.Equal(got, []string{"all"}) {
		t.Errorf("after dropping the alias: %v", got)
	}
}

func TestSameSelectionComparesModelFields(t *testing.T) {
	base := func() *auth.Auth {
		return rec("a", "openai", func(a *auth.Auth) { a.ModelAlias = map[string]string{"a": "b"} })
	}
	for name, change := range map[string]func(*auth.Auth){
		"excluded_models": func(a *auth.Auth) { a.ExcludedModels = []string{"x"} },
		"no alias":        func(a *auth.Auth) { a.ModelAlias = nil },
		"alias value":     func(a *auth.Auth) { a.ModelAlias = map[string]string{"a": "c"} },
		"alias key":       func(a *auth.Auth) { a.ModelAlias = map[string]string{"b": "b"} },
	} {
		b := base()
		change(b)
		if sameSelection(base(), b) {
			t.Errorf("%s: change not seen", name)
		}
	}
	if !sameSelection(base(), base()) {
		t.Error("equal records select differently")
	}
}
