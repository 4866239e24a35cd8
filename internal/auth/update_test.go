package auth

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
)

// Read-modify-write cycles of several stores (as several Caddy instances)
// on one storage lose no update: each takes the lock once and re-reads.
func TestStoreUpdateLosesNoWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*CaddyStore{
		NewCaddyStore(&certmagic.FileStorage{Path: dir}, testPrefix),
		NewCaddyStore(&certmagic.FileStorage{Path: dir}, testPrefix),
	}
	writeRecord(t, dir, "counter.json", `{"type":"claude","api_key":"sk-ant-api03-1234567890","note":"kept"}`)
	const writers, rounds = 3, 3
	var wg sync.WaitGroup
	errs := make(chan error, len(stores)*writers*rounds)
	for _, s := range stores {
		for range writers {
			wg.Go(func() {
				for range rounds {
					_, changed, err := s.Update(ctx, "counter", func(cur *Auth) (*Auth, error) {
						next := cur.Clone()
						next.Priority++
						return next, nil
					})
					if err != nil || !changed {
						errs <- errors.Join(err, errors.New("update not written"))
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rec, _, err := stores[0].Update(ctx, "counter", func(*Auth) (*Auth, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := len(stores) * writers * rounds; rec.Priority != want {
		t.Fatalf("priority %d after %d increments: updates were lost", rec.Priority, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(stores[0].Key("counter"))))
	if jsonField(t, b, "note") != "kept" || jsonField(t, b, "type") != "claude" {
		t.Fatalf("unknown fields or the provider's name lost: %s", b)
	}
}

func TestStoreUpdateCases(t *testing.T) {
	ctx := context.Background()
	const orig = `{"type": "claude", "api_key": "sk-ant-api03-1234567890"}`
	for _, tc := range []struct {
		name    string
		stored  string // "" for none
		fn      func(cur *Auth) (*Auth, error)
		called  bool // fn must be called
		changed bool
		errHas  string
		wantDoc string // the stored document afterwards, "" for none
		noRec   bool   // Update returns no record
	}{
		{
			name: "nil leaves storage alone and returns the stored record", stored: orig,
			fn: func(cur *Auth) (*Auth, error) { return nil, nil }, called: true, wantDoc: orig,
		},
		{
			name: "an equal record is not written", stored: orig,
			fn: func(cur *Auth) (*Auth, error) { return cur.Clone(), nil }, called: true, wantDoc: orig,
		},
		{
			name: "a missing record is nil, and fn may create it",
			fn: func(cur *Auth) (*Auth, error) {
				if cur != nil {
					return nil, errors.New("cur is not nil")
				}
				a := &Auth{ID: "r"}
				a.Provider, a.APIKey = "openai", "sk-oai-1234567890"
				return a, nil
			},
			called: true, changed: true, wantDoc: `{"provider":"openai","api_key":"sk-oai-1234567890"}`,
		},
		{
			name: "an error of fn writes nothing", stored: orig,
			fn: func(cur *Auth) (*Auth, error) {
				next := cur.Clone()
				next.Priority = 9
				return next, errors.New("token endpoint down")
			},
			called: true, errHas: "token endpoint down", wantDoc: orig,
		},
		{
			name: "a record that does not parse is nil: left alone", stored: `{"type":"claude"`,
			fn: func(cur *Auth) (*Auth, error) {
				if cur != nil {
					return nil, errors.New("cur is not nil")
				}
				return nil, nil
			},
			called: true, wantDoc: `{"type":"claude"`, noRec: true,
		},
		{
			name: "a record that does not parse is nil: replaced", stored: `{"type":"claude"`,
			fn: func(cur *Auth) (*Auth, error) {
				a := &Auth{ID: "r"}
				a.Provider, a.APIKey = "openai", "sk-oai-1234567890"
				return a, nil
			},
			called: true, changed: true, wantDoc: `{"provider":"openai","api_key":"sk-oai-1234567890"}`,
		},
		{
			name: "an invalid record is refused", stored: orig,
			fn: func(cur *Auth) (*Auth, error) {
				next := cur.Clone()
				next.APIKey = ""
				return next, nil
			},
			called: true, errHas: "missing credential", wantDoc: orig,
		},
		{
			name: "an inline record is refused", stored: orig,
			fn: func(cur *Auth) (*Auth, error) {
				next := cur.Clone()
				next.Inline = true
				return next, nil
			},
			called: true, errHas: "inline", wantDoc: orig,
		},
		{
			name: "a record of another ID is refused", stored: orig,
			fn: func(cur *Auth) (*Auth, error) {
				next := cur.Clone()
				next.ID = "other"
				return next, nil
			},
			called: true, errHas: `returned record "other"`, wantDoc: orig,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newFileStore(t)
			path := filepath.Join(dir, filepath.FromSlash(s.Key("r")))
			if tc.stored != "" {
				writeRecord(t, dir, "r.json", tc.stored)
			}
			called := false
			rec, changed, err := s.Update(ctx, "r", func(cur *Auth) (*Auth, error) {
				called = true
				return tc.fn(cur)
			})
			if called != tc.called || changed != tc.changed {
				t.Fatalf("called %v, changed %v; want %v, %v (err %v)", called, changed, tc.called, tc.changed, err)
			}
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want one with %q", err, tc.errHas)
				}
			} else if err != nil || (rec == nil) != tc.noRec {
				t.Fatalf("Update: %v, %v", rec, err)
			}
			b, rerr := os.ReadFile(path)
			switch {
			case tc.wantDoc == "" && rerr == nil:
				t.Fatalf("record written: %s", b)
			case tc.wantDoc != "" && (rerr != nil || !sameDocument(b, []byte(tc.wantDoc)) && string(b) != tc.wantDoc):
				t.Fatalf("stored %s (%v), want %s", b, rerr, tc.wantDoc)
			}
			if !tc.changed && tc.stored != "" && string(b) != tc.stored {
				t.Fatalf("file rewritten: %s", b)
			}
		})
	}
}

func jsonField(t *testing.T, b []byte, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m[name]
}

// ApplyToken changes the token fields only, in place, and adds the ones a
// record lacks at the end.
func TestApplyToken(t *testing.T) {
	now := time.Date(2025, 10, 1, 12, 0, 0, 500, time.FixedZone("CEST", 2*3600))
	exp := now.Add(8 * time.Hour)

	a := mustParse(t, "codex", codexOAuthFile)
	a.ApplyToken(oauth.Token{AccessToken: "at-new", RefreshToken: "rt-new", IDToken: "id-new", Expiry: exp, AccountID: "acct-9"}, now)
	out := mustMarshal(t, a)
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "codex", "id_token": "id-new", "access_token": "at-new", "refresh_token": "rt-new",
		"account_id": "acct-9", "email": "x@y.z", "expired": "2025-10-01T18:00:00Z", "last_refresh": "2025-10-01T10:00:00Z",
	}
	if !reflect.DeepEqual(doc, want) {
		t.Fatalf("got  %v\nwant %v", doc, want)
	}
	if got, want := fieldOrder(t, out), fieldOrder(t, []byte(codexOAuthFile)); !reflect.DeepEqual(got, want) {
		t.Fatalf("field order %v, want %v", got, want)
	}

	// A refresh that does not rotate the refresh token and tells no expiry
	// keeps the refresh token and drops the stale expiry.
	b := mustParse(t, "claude", `{"provider":"claude","access_token":"at-old","refresh_token":"rt-keep","expired":"2020-01-01T00:00:00Z","x":1}`)
	b.ApplyToken(oauth.Token{AccessToken: "at-2"}, now)
	if got := string(mustMarshal(t, b)); got != `{"provider":"claude","access_token":"at-2","refresh_token":"rt-keep","x":1,"last_refresh":"2025-10-01T10:00:00Z"}` {
		t.Fatalf("got %s", got)
	}
}
