package auth

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestServesModelExclusionsAndAliases(t *testing.T) {
	a := &Auth{Fields: Fields{
		Models:         []string{"claude-*"},
		ExcludedModels: []string{"*opus*"},
		ModelAlias:     map[string]string{"Opus-Cheap": "claude-opus-4-1", "fast": "local/fast"},
	}}
	for model, want := range map[string]bool{
		"claude-sonnet-4-5": true,
		"claude-opus-4-1":   false, // excluded
		"CLAUDE-OPUS-4-1":   false,
		"opus-cheap":        true, // alias key, whatever the lists say
		"fast":              true,
		"local/fast":        false, // an upstream name is not a client name
		"gpt-5":             false,
		"":                  false,
	} {
		if got := a.ServesModel(model); got != want {
			t.Errorf("ServesModel(%q) = %v, want %v", model, got, want)
		}
	}
	for model, want := range map[string]string{
		"opus-cheap":        "claude-opus-4-1",
		"Opus-Cheap":        "claude-opus-4-1",
		"fast":              "local/fast",
		"claude-sonnet-4-5": "claude-sonnet-4-5",
		"":                  "",
	} {
		if got := a.UpstreamModel(model); got != want {
			t.Errorf("UpstreamModel(%q) = %q, want %q", model, got, want)
		}
	}
	only := &Auth{Fields: Fields{ExcludedModels: []string{"gpt-4*"}}}
	if only.ServesModel("gpt-4o") || !only.ServesModel("gpt-5") {
		t.Error("excluded_models without models")
	}
}

func TestValidateModelFields(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(a *Auth)
		want   string
	}{
		{"valid", func(a *Auth) {
			a.ExcludedModels = []string{"*opus*"}
			a.ModelAlias = map[string]string{"fast": "vendor/fast-v2"}
		}, ""},
		{"empty exclusion", func(a *Auth) { a.ExcludedModels = []string{"x", ""} }, "excluded_models[1]"},
		{"exclusion with space", func(a *Auth) { a.ExcludedModels = []string{"a b"} }, "excluded_models[0]"},
		{"empty alias key", func(a *Auth) { a.ModelAlias = map[string]string{"": "x"} }, `client name ""`},
		{"alias key with space", func(a *Auth) { a.ModelAlias = map[string]string{"a b": "x"} }, `client name "a b"`},
		{"empty alias value", func(a *Auth) { a.ModelAlias = map[string]string{"a": ""} }, `upstream name for "a"`},
		{"alias value with newline", func(a *Auth) { a.ModelAlias = map[string]string{"a": "x\ny"} }, `upstream name for "a"`},
		{"long alias value", func(a *Auth) { a.ModelAlias = map[string]string{"a": strings.Repeat("x", 257)} }, `upstream name for "a"`},
		{"keys differing in case", func(a *Auth) { a.ModelAlias = map[string]string{"Fast": "x", "fast": "y"} }, `"Fast" and "fast" differ only in case`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Auth{ID: "a", Fields: Fields{Provider: "openai", APIKey: "sk-secret-value-123"}}
			tc.modify(a)
			err := a.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "sk-secret") {
				t.Fatal("error shows the key")
			}
		})
	}
}

func TestModelFieldsInStoredRecords(t *testing.T) {
	doc := `{"type":"openai","api_key":"sk-1","excluded_models":["gpt-4*"],"model_alias":{"fast":"gpt-5-mini"},"vendor_field":{"x":1}}`
	a, err := Parse("r", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ExcludedModels) != 1 || a.ModelAlias["fast"] != "gpt-5-mini" {
		t.Fatalf("decoded %+v", a.Fields)
	}
	out, _ := json.Marshal(a)
	if string(out) != doc {
		t.Fatalf("round trip:\n%s\nwant\n%s", out, doc)
	}
	c := a.Clone()
	c.ModelAlias["fast"] = "other"
	c.ExcludedModels[0] = "other"
	if a.ModelAlias["fast"] != "gpt-5-mini" || a.ExcludedModels[0] != "gpt-4*" {
		t.Fatal("Clone shares the model fields")
	}
	c.ModelAlias = map[string]string{"slow": "gpt-5"}
	out, _ = json.Marshal(c)
	if !strings.Contains(string(out), `"model_alias":{"slow":"gpt-5"}`) || !strings.Contains(string(out), `"vendor_field":{"x":1}`) {
		t.Fatalf("changed record: %s", out)
	}
	if _, err := Parse("r", []byte(`{"provider":"openai","api_key":"k","model_alias":["x"]}`)); err == nil || !strings.Contains(err.Error(), `field "model_alias"`) {
		t.Fatalf("bad model_alias type: %v", err)
	}
}

// A Gemini credential's upstream alias goes into the request path
// (/v1beta/models/{model}:{action}): it must stay one plain segment, or the
// upstream would get another path than the one the client's request was
// checked against. Other providers take the name in the body, where "/" is
// common ("vendor/model").
func TestGeminiAliasIsOnePathSegment(t *testing.T) {
	for value, ok := range map[string]bool{
		"gemini-2.5-flash":        true,
		"tunedModels-x":           true,
		"gemini-2.5-pro/../../v1": false,
		"x:streamGenerateContent": false,
		"x?key=1":                 false,
		"x#y":                     false,
		"x%2Fy":                   false,
		"..":                      false,
		".":                       false,
		"models/gemini-2.5-flash": false,
	} {
		a := &Auth{ID: "g", Fields: Fields{Provider: "gemini", APIKey: "AIza-secret-value-123", ModelAlias: map[string]string{"fast": value}}}
		err := a.Validate()
		if ok != (err == nil) {
			t.Errorf("alias %q: error %v, want ok=%v", value, err, ok)
		}
		if err != nil && (!strings.Contains(err.Error(), `upstream name for "fast"`) || strings.Contains(err.Error(), "AIza")) {
			t.Errorf("alias %q: error %q", value, err)
		}
	}
	o := &Auth{ID: "o", Fields: Fields{Provider: "openai_compatible", APIKey: "sk-1", BaseURL: "http://127.0.0.1:1", ModelAlias: map[string]string{"fast": "vendor/fast:free"}}}
	if err := o.Validate(); err != nil {
		t.Fatalf("an OpenAI-compatible alias with / and : is a body value: %v", err)
	}
}
