package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

const testPrefix = "llm_proxy/default/auths"

// newFileStore returns a store on a fresh Caddy file storage, and the
// storage's directory.
func newFileStore(t *testing.T) (*CaddyStore, string) {
	t.Helper()
	dir := t.TempDir()
	return NewCaddyStore(&certmagic.FileStorage{Path: dir}, "/"+testPrefix+"/"), dir
}

// writeRecord puts a file into the storage directory, bypassing the store.
func writeRecord(t *testing.T, dir, id, data string) string {
	t.Helper()
	name := filepath.Join(dir, filepath.FromSlash(testPrefix), filepath.FromSlash(id))
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func listIDs(t *testing.T, s Store) ([]string, []LoadError) {
	t.Helper()
	auths, bad, err := s.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ids := []string{}
	for _, a := range auths {
		ids = append(ids, a.ID)
	}
	return ids, bad
}

func TestStoreListEmpty(t *testing.T) {
	s, dir := newFileStore(t)
	if ids, bad := listIDs(t, s); len(ids) != 0 || len(bad) != 0 {
		t.Errorf("missing prefix: got %v, %v", ids, bad)
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(testPrefix)), 0o700); err != nil {
		t.Fatal(err)
	}
	if ids, bad := listIDs(t, s); len(ids) != 0 || len(bad) != 0 {
		t.Errorf("empty prefix: got %v, %v", ids, bad)
	}
}

func TestStoreMisconfigured(t *testing.T) {
	ctx := context.Background()
	a := &Auth{ID: "a", Fields: Fields{Provider: "claude", APIKey: "sk-ant-1234567890"}}
	for _, s := range []*CaddyStore{
		NewCaddyStore(&certmagic.FileStorage{Path: t.TempDir()}, "/"),
		{Prefix: "x"},
	} {
		if _, _, err := s.List(ctx); err == nil {
			t.Error("List: no error")
		}
		if _, err := s.Save(ctx, a); err == nil {
			t.Error("Save: no error")
		}
		if err := s.Delete(ctx, "a"); err == nil {
			t.Error("Delete: no error")
		}
	}
}

func TestStoreSaveList(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)
	w := 3
	in := []*Auth{
		{ID: "b", Fields: Fields{Provider: "openai", APIKey: "sk-proj-1234567890", Models: []string{"gpt-*"}, Weight: &w}},
		{ID: "a", Fields: Fields{Provider: "claude", AccessToken: "sk-ant-oat01-1234", Headers: map[string]string{"X-A": "1"}, Disabled: true}},
		{ID: "team/x/c", Fields: Fields{Provider: "openai_compatible", APIKey: "k-1234567890", BaseURL: "http://127.0.0.1:9/v1", Priority: -1}},
	}
	for _, a := range in {
		changed, err := s.Save(ctx, a)
		if err != nil || !changed {
			t.Fatalf("Save(%s) = %v, %v; want true, nil", a.ID, changed, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "llm_proxy", "default", "auths", "team", "x", "c.json")); err != nil {
		t.Errorf("nested record not at its key: %v", err)
	}
	if got := s.Key("team/x/c"); got != "llm_proxy/default/auths/team/x/c.json" {
		t.Errorf("Key() = %q", got)
	}

	out, bad, err := s.List(ctx)
	if err != nil || len(bad) != 0 {
		t.Fatalf("List: %v, bad %v", err, bad)
	}
	if len(out) != 3 || out[0].ID != "a" || out[1].ID != "b" || out[2].ID != "team/x/c" {
		t.Fatalf("List returned %d records: %v", len(out), out)
	}
	for _, got := range out {
		var want *Auth
		for _, a := range in {
			if a.ID == got.ID {
				want = a
			}
		}
		g := *got
		g.raw, g.order, g.providerKey = nil, nil, ""
		if !reflect.DeepEqual(&g, want) {
			t.Errorf("%s: listed %+v, saved %+v", got.ID, g, *want)
		}
	}
}

func TestStoreUnchangedSaveSkipped(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)

	// A hand-written file, formatted its own way.
	const data = `{"type": "claude",   "api_key": "sk-ant-api03-1234567890", "note": {"b": 1, "a": [1, 2]}}`
	name := writeRecord(t, dir, "hand.json", data)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(name, old, old); err != nil {
		t.Fatal(err)
	}

	auths, _, err := s.List(ctx)
	if err != nil || len(auths) != 1 {
		t.Fatalf("List: %v, %v", auths, err)
	}
	a := auths[0]
	changed, err := s.Save(ctx, a)
	if err != nil || changed {
		t.Fatalf("Save of an unchanged record = %v, %v; want false, nil", changed, err)
	}
	// A record built from scratch with the same content is the same
	// document too, though its provider field has another name.
	same := &Auth{ID: "hand", Fields: Fields{Provider: "claude", APIKey: "sk-ant-api03-1234567890"}}
	same.raw = map[string]json.RawMessage{"note": json.RawMessage(`{"a":[1,2],"b":1}`)}
	same.order = []string{"note"}
	same.providerKey = "type"
	if changed, err := s.Save(ctx, same); err != nil || changed {
		t.Fatalf("Save of an equal record = %v, %v; want false, nil", changed, err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(old) {
		t.Errorf("file rewritten: mod time %v", fi.ModTime())
	}
	if b, _ := os.ReadFile(name); string(b) != data {
		t.Errorf("file rewritten: %s", b)
	}

	a.Priority = 1
	if changed, err := s.Save(ctx, a); err != nil || !changed {
		t.Fatalf("Save of a changed record = %v, %v; want true, nil", changed, err)
	}
	if changed, err := s.Save(ctx, a); err != nil || changed {
		t.Fatalf("second Save of the record = %v, %v; want false, nil", changed, err)
	}
}

func TestStoreKeepsUnknownFields(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)
	name := writeRecord(t, dir, "codex/acct.json", codexOAuthFile)

	auths, _, err := s.List(ctx)
	if err != nil || len(auths) != 1 || auths[0].ID != "codex/acct" {
		t.Fatalf("List: %v, %v", auths, err)
	}
	a := auths[0].Clone()
	a.Disabled = true
	if changed, err := s.Save(ctx, a); err != nil || !changed {
		t.Fatalf("Save = %v, %v", changed, err)
	}

	var got, want map[string]any
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("stored record is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(codexOAuthFile), &want); err != nil {
		t.Fatal(err)
	}
	want["disabled"] = true
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stored %v\nwant   %v", got, want)
	}
}

func TestStoreLoadsLoginFilesVerbatim(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)
	files := map[string]string{
		"claude-a@b.c.json":         claudeOAuthFile,
		"codex-x@y.z-acct.json":     codexOAuthFile,
		"claude-key.json":           claudeKeyFile,
		"sub/dir/claude-key-2.json": claudeKeyFile,
	}
	for name, data := range files {
		writeRecord(t, dir, name, data)
	}
	auths, bad, err := s.List(ctx)
	if err != nil || len(bad) != 0 || len(auths) != len(files) {
		t.Fatalf("List = %d records, bad %v, err %v", len(auths), bad, err)
	}
	for _, a := range auths {
		if changed, err := s.Save(ctx, a); err != nil || changed {
			t.Errorf("Save(%s) = %v, %v; want false, nil", a.ID, changed, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(s.Key(a.ID)))); string(b) != files[a.ID+".json"] {
			t.Errorf("%s rewritten: %s", a.ID, b)
		}
	}
}

func TestStoreSkipsBadRecords(t *testing.T) {
	s, dir := newFileStore(t)
	writeRecord(t, dir, "good.json", claudeKeyFile)
	writeRecord(t, dir, "corrupt.json", `{"type":"claude","api_key":"sk-ant-trunc`)
	writeRecord(t, dir, "gemini-cli.json", geminiCLIFile)
	writeRecord(t, dir, "bad name.json", claudeKeyFile)
	writeRecord(t, dir, "README.md", "notes")
	writeRecord(t, dir, "good.json.bak", claudeKeyFile)
	writeRecord(t, dir, "12345", claudeKeyFile) // a stray temporary file

	ids, bad := listIDs(t, s)
	if !reflect.DeepEqual(ids, []string{"good"}) {
		t.Errorf("loaded %v, want [good]", ids)
	}
	got := map[string]string{}
	for _, b := range bad {
		got[b.Key] = b.Error()
		if strings.Contains(b.Error(), "sk-ant-trunc") {
			t.Errorf("error %q contains a secret", b.Error())
		}
	}
	for key, want := range map[string]string{
		testPrefix + "/corrupt.json":    "decoding",
		testPrefix + "/gemini-cli.json": "Gemini CLI",
		testPrefix + "/bad name.json":   "not allowed",
	} {
		if !strings.Contains(got[key], want) || !strings.Contains(got[key], key) {
			t.Errorf("bad record %s: error %q, want one naming it and containing %q", key, got[key], want)
		}
	}
	if len(bad) != 3 {
		t.Errorf("%d bad records, want 3: %v", len(bad), bad)
	}
}

func TestStoreDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileStore(t)
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete of a missing record: %v", err)
	}
	for _, id := range []string{"a", "team/b"} {
		if _, err := s.Save(ctx, &Auth{ID: id, Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "team/b"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := listIDs(t, s); !reflect.DeepEqual(ids, []string{"a"}) {
		t.Errorf("after Delete: %v", ids)
	}
	if err := s.Delete(ctx, "team/b"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestStoreRefuses(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)
	for _, id := range []string{"", "../x", "a/../../x", "/x", "x/", "a//b", "a/./b", `a\b`, "a b", "a:b", "é", strings.Repeat("a", 201)} {
		a := &Auth{ID: id, Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}}
		if _, err := s.Save(ctx, a); err == nil {
			t.Errorf("Save(%q): no error", id)
		}
		if err := s.Delete(ctx, id); err == nil {
			t.Errorf("Delete(%q): no error", id)
		}
	}

	inline := &Auth{ID: "inline", Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}, Inline: true}
	if _, err := s.Save(ctx, inline); err == nil || !strings.Contains(err.Error(), "inline") {
		t.Errorf("Save of an inline credential: %v", err)
	}
	invalid := &Auth{ID: "invalid", Fields: Fields{Provider: "openai"}}
	if _, err := s.Save(ctx, invalid); err == nil {
		t.Error("Save of an invalid record: no error")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, filepath.FromSlash(testPrefix))); len(entries) != 0 {
		t.Errorf("refused records were written: %v", entries)
	}
}

// TestStoreConcurrentSaves runs two stores on one directory, as two Caddy
// instances sharing a file system would, saving from many goroutines while
// listing. Every listing that succeeds must see only whole records.
func TestStoreConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*CaddyStore{
		NewCaddyStore(&certmagic.FileStorage{Path: dir}, testPrefix),
		NewCaddyStore(&certmagic.FileStorage{Path: dir}, testPrefix),
	}
	const writers, rounds = 8, 4

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for si, s := range stores {
		for g := range writers {
			wg.Go(func() {
				for r := range rounds {
					id := fmt.Sprintf("s%d/g%d/r%d", si, g, r)
					a := &Auth{ID: id, Fields: Fields{Provider: "openai", APIKey: "sk-" + strings.Repeat("x", 64), Priority: r}}
					if _, err := s.Save(ctx, a); err != nil {
						errs <- err
					}
				}
				// One record both stores write, contended through the lock.
				if g == 0 {
					a := &Auth{ID: "shared", Fields: Fields{Provider: "openai", APIKey: "sk-1234567890", Label: fmt.Sprint("store ", si)}}
					if _, err := s.Save(ctx, a); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Go(func() {
			for range 20 {
				_, bad, err := s.List(ctx)
				if err != nil {
					t.Logf("listing during writes: %v", err)
				}
				if err == nil && len(bad) != 0 {
					errs <- fmt.Errorf("listing during writes saw bad records: %v", bad)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for _, s := range stores {
		ids, bad := listIDs(t, s)
		if len(bad) != 0 {
			t.Errorf("bad records: %v", bad)
		}
		if want := len(stores)*writers*rounds + 1; len(ids) != want {
			t.Errorf("%d records, want %d", len(ids), want)
		}
	}
	// No lock is left behind.
	locks, err := os.ReadDir(filepath.Join(dir, "locks"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(locks) != 0 {
		t.Errorf("locks left: %v", locks)
	}
}

// flakyStorage is a file storage whose List fails with "not exist" a
// number of times, as a file storage does when a file vanishes during the
// walk, and whose Delete reports missing keys as other backends may.
type flakyStorage struct {
	*certmagic.FileStorage
	mu        sync.Mutex
	listFails int
}

func (f *flakyStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	f.mu.Lock()
	fail := f.listFails > 0
	f.listFails--
	f.mu.Unlock()
	if fail {
		return nil, &os.PathError{Op: "lstat", Path: "vanished", Err: os.ErrNotExist}
	}
	return f.FileStorage.List(ctx, prefix, recursive)
}

func (f *flakyStorage) Delete(ctx context.Context, key string) error {
	if !f.Exists(ctx, key) {
		return os.ErrNotExist
	}
	return f.FileStorage.Delete(ctx, key)
}

func TestStoreListRetriesVanishedFiles(t *testing.T) {
	ctx := context.Background()
	fs := &flakyStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	s := NewCaddyStore(fs, testPrefix)
	if _, err := s.Save(ctx, &Auth{ID: "a", Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}}); err != nil {
		t.Fatal(err)
	}

	fs.listFails = listAttempts - 1
	if ids, _ := listIDs(t, s); !reflect.DeepEqual(ids, []string{"a"}) {
		t.Errorf("after transient failures: %v", ids)
	}

	// A listing that keeps failing on an existing prefix is an error, not
	// an empty store that would drop every credential.
	fs.listFails = listAttempts
	if auths, _, err := s.List(ctx); err == nil {
		t.Errorf("List = %v, no error", auths)
	}

	if err := s.Delete(ctx, "missing"); err != nil {
		t.Errorf("Delete of a missing record: %v", err)
	}
}

// unreadableStorage is a file storage that fails to load the keys in
// broken, as a storage does for a file it may not read or a backend that
// fails on one key.
type unreadableStorage struct {
	*certmagic.FileStorage
	broken map[string]bool
}

func (u *unreadableStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if u.broken[key] {
		return nil, &os.PathError{Op: "open", Path: key, Err: os.ErrPermission}
	}
	return u.FileStorage.Load(ctx, key)
}

// An ID with a segment ending in ".json" makes a directory that looks like
// a record to every later listing; such IDs are refused everywhere.
func TestValidateIDRefusesRecordLikeSegments(t *testing.T) {
	for _, id := range []string{"a.json/b", "a.JSON/b", "team/x.json/y", "x.json", "team/x.Json", ".json"} {
		if err := ValidateID(id); err == nil || !strings.Contains(err.Error(), ".json") {
			t.Errorf("ValidateID(%q) = %v, want an error naming .json", id, err)
		}
	}
	for _, id := range []string{"json", "a.jsonx/b", "a-json/b", "team/json.d", "a.js"} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
	ctx := context.Background()
	s, dir := newFileStore(t)
	if _, err := s.Save(ctx, &Auth{ID: "a.json/b", Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}}); err == nil {
		t.Fatal("Save of a.json/b: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(testPrefix), "a.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a.json was created in storage: %v", err)
	}
}

// A directory named like a record and a key that cannot be read are
// reported, and every other record still loads.
func TestStoreListSkipsUnreadableKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs := &unreadableStorage{FileStorage: &certmagic.FileStorage{Path: dir}}
	s := NewCaddyStore(fs, testPrefix)
	for _, id := range []string{"a", "locked", "team/z"} {
		if _, err := s.Save(ctx, &Auth{ID: id, Fields: Fields{Provider: "openai", APIKey: "sk-1234567890"}}); err != nil {
			t.Fatal(err)
		}
	}
	fs.broken = map[string]bool{testPrefix + "/locked.json": true}
	// What an older version let POST {"id": "x.json/b"} create, or an
	// operator made by hand.
	writeRecord(t, dir, "x.json/b.json", claudeKeyFile)
	if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(testPrefix), "empty.json"), 0o700); err != nil {
		t.Fatal(err)
	}

	ids, bad := listIDs(t, s)
	if !reflect.DeepEqual(ids, []string{"a", "team/z"}) {
		t.Fatalf("loaded %v, want [a team/z]", ids)
	}
	got := map[string]LoadError{}
	for _, b := range bad {
		got[b.Key] = b
	}
	for key, want := range map[string]struct {
		id         string
		unreadable bool
		msg        string
	}{
		testPrefix + "/x.json":        {"x", true, "a directory, not a record"},
		testPrefix + "/empty.json":    {"empty", true, "a directory, not a record"},
		testPrefix + "/locked.json":   {"locked", true, "permission denied"},
		testPrefix + "/x.json/b.json": {"", false, `ends in ".json"`},
	} {
		b, ok := got[key]
		if !ok {
			t.Errorf("%s not reported; bad: %v", key, bad)
			continue
		}
		if b.ID != want.id || b.Unreadable != want.unreadable || !strings.Contains(b.Error(), want.msg) {
			t.Errorf("%s: ID %q, unreadable %v, error %q; want %q, %v, containing %q", key, b.ID, b.Unreadable, b.Error(), want.id, want.unreadable, want.msg)
		}
	}
	if len(bad) != 4 {
		t.Errorf("%d bad keys, want 4: %v", len(bad), bad)
	}
}

// Deleting a record never takes a directory named like it, nor what the
// directory holds.
func TestStoreDeleteRefusesDirectories(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileStore(t)
	inside := writeRecord(t, dir, "x.json/b.json", claudeKeyFile)
	if err := s.Delete(ctx, "x"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Delete(x) = %v, want an error naming the directory", err)
	}
	if _, err := os.Stat(inside); err != nil {
		t.Fatalf("the directory's content is gone: %v", err)
	}
}
