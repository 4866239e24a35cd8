package handler

import (
	"testing"

	"github.com/caddy-llm-proxy/llmproxy/access"
	"github.com/caddy-llm-proxy/llmproxy/internal/apifamily"
	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
)

func TestPoolModelList(t *testing.T) {
	creds := []*auth.Auth{
		{Fields: auth.Fields{Models: []string{"gpt-5*", "o3"}, ExcludedModels: []string{"gpt-5-codex"}, ModelAlias: map[string]string{"fast": "gpt-5-mini"}}},
		// Alias names differing in case are listed once, in byte order.
		{Fields: auth.Fields{ExcludedModels: []string{"*"}, ModelAlias: map[string]string{"Fast": "x", "cheap": "y"}}},
	}
	for _, tc := range []struct {
		name, body, want string
		fam              apifamily.Family
		ok               bool
	}{
		{"openai", `{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"gpt-5","object":"model","x":[1]},{"id":"gpt-5-codex"},{"id":"o3"}]}`,
			`{"object":"list","data":[{"id":"gpt-5","object":"model","x":[1]},{"id":"o3"},{"id":"Fast","object":"model","created":0,"owned_by":"llm_proxy"},{"id":"cheap","object":"model","created":0,"owned_by":"llm_proxy"}]}`,
			apifamily.OpenAI, true},
		{"alias already listed", `{"data":[{"id":"FAST"}],"object":"list"}`,
			`{"data":[{"id":"FAST"},{"id":"cheap","object":"model","created":0,"owned_by":"llm_proxy"}],"object":"list"}`, apifamily.OpenAI, true},
		{"anthropic last page", `{"data":[{"type":"model","id":"o3"}],"has_more":false,"first_id":"o3","last_id":"o3"}`,
			`{"data":[{"type":"model","id":"o3"},{"type":"model","id":"Fast","display_name":"Fast","created_at":"1970-01-01T00:00:00Z"},{"type":"model","id":"cheap","display_name":"cheap","created_at":"1970-01-01T00:00:00Z"}],"has_more":false,"first_id":"o3","last_id":"o3"}`,
			apifamily.Anthropic, true},
		{"anthropic more pages", `{"data":[{"id":"claude-x"}],"has_more":true,"last_id":"claude-x"}`, `{"data":[],"has_more":true,"last_id":"claude-x"}`, apifamily.Anthropic, true},
		{"nested data untouched", `{"meta":{"data":[{"id":"gpt-4o"}]},"data":[{"id":"gpt-4o"}]}`, `{"meta":{"data":[{"id":"gpt-4o"}]},"data":[{"id":"Fast","object":"model","created":0,"owned_by":"llm_proxy"},{"id":"cheap","object":"model","created":0,"owned_by":"llm_proxy"}]}`, apifamily.OpenAI, true},
		{"not a list", `{"data":"x"}`, `{"data":"x"}`, apifamily.OpenAI, false},
		{"invalid JSON", `{"data":[`, `{"data":[`, apifamily.OpenAI, false},
		{"array", `[{"data":[]}]`, `[{"data":[]}]`, apifamily.OpenAI, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := poolModelList([]byte(tc.body), tc.fam, creds, access.Client{})
			if string(got) != tc.want || ok != tc.ok {
				t.Errorf("got %s, %v\nwant %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPoolModelListClient(t *testing.T) {
	creds := []*auth.Auth{{Fields: auth.Fields{ModelAlias: map[string]string{"fast": "gpt-5", "cheap": "gpt-4o-mini"}}}}
	body := `{"object":"list","data":[{"id":"gpt-4o-mini"},{"id":"gpt-5"},{"id":"o3"}]}`
	for _, tc := range []struct {
		models []string
		want   string
	}{
		{nil, `{"object":"list","data":[{"id":"gpt-4o-mini"},{"id":"gpt-5"},{"id":"o3"},{"id":"cheap","object":"model","created":0,"owned_by":"llm_proxy"},{"id":"fast","object":"model","created":0,"owned_by":"llm_proxy"}]}`},
		{[]string{"Cheap", "o*"}, `{"object":"list","data":[{"id":"o3"},{"id":"cheap","object":"model","created":0,"owned_by":"llm_proxy"}]}`},
		{[]string{"none"}, `{"object":"list","data":[]}`},
	} {
		got, ok := poolModelList([]byte(body), apifamily.OpenAI, creds, access.Client{Label: "k", Models: tc.models})
		if !ok || string(got) != tc.want {
			t.Errorf("models %v: got %s, %v\nwant %s", tc.models, got, ok, tc.want)
		}
	}
}

func TestPoolModelListGemini(t *testing.T) {
	creds := []*auth.Auth{{Fields: auth.Fields{ExcludedModels: []string{"*pro*"}, ModelAlias: map[string]string{"fast": "gemini-2.5-flash"}}}}
	for _, tc := range []struct {
		name, body, want string
		client           access.Client
	}{
		{"last page", `{"models":[{"name":"models/gemini-2.5-pro","x":1},{"name":"models/gemini-2.5-flash"}]}`,
			`{"models":[{"name":"models/gemini-2.5-flash"},{"name":"models/fast","displayName":"fast"}]}`, access.Client{}},
		{"more pages", `{"models":[{"name":"models/gemini-2.5-flash"}],"nextPageToken":"abc"}`,
			`{"models":[{"name":"models/gemini-2.5-flash"}],"nextPageToken":"abc"}`, access.Client{}},
		{"limited key", `{"models":[{"name":"models/gemini-2.5-flash"},{"name":"models/gemini-2.5-flash-lite"}],"nextPageToken":""}`,
			`{"models":[{"name":"models/gemini-2.5-flash-lite"},{"name":"models/fast","displayName":"fast"}],"nextPageToken":""}`,
			access.Client{Models: []string{"*-lite", "fast"}}},
		{"data is not Gemini's list", `{"data":[{"id":"gemini-2.5-pro"}]}`, `{"data":[{"id":"gemini-2.5-pro"}]}`, access.Client{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := poolModelList([]byte(tc.body), apifamily.Gemini, creds, tc.client)
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
