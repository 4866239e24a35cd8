package llmproxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

// brokenStorage is a file storage that can be made to fail listings and
// the loads of chosen keys, as a remote backend or a file it may not read
// does.
type brokenStorage struct {
	*certmagic.FileStorage
	failList bool
	failLoad map[string]bool
}

func (b *brokenStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if b.failList {
		return nil, errors.New("storage backend unavailable")
	}
	return b.FileStorage.List(ctx, prefix, recursive)
}

func (b *brokenStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if b.failLoad[key] {
		return nil, &os.PathError{Op: "open", Path: key, Err: os.ErrPermission}
	}
	return b.FileStorage.Load(ctx, key)
}

// newBrokenFixture is an admin fixture whose storage can be broken on
// demand, holding the stored credentials a and team/b.
func newBrokenFixture(t *testing.T, name string) (*adminFixture, *brokenStorage) {
	t.Helper()
	root := t.TempDir()
	bs := &brokenStorage{FileStorage: &certmagic.FileStorage{Path: root}}
	f := attachFixture(t, name, "", bs, root)
	for _, id := range []string{"a", "team/b"} {
		body := `{"id":"` + id + `","provider":"claude","api_key":"sk-ant-` + id + `-0123456789"}`
		wantStatus(t, adminCall(t, testRemote, http.MethodPost, "/llm_proxy/pools/"+name+"/auths", body, nil), http.StatusCreated)
	}
	return f, bs
}

func poolIDs(f *adminFixture) []string {
	var ids []string
	for _, c := range f.p.Credentials() {
		ids = append(ids, c.ID())
	}
	return ids
}

// A listing that fails keeps every current member, on a rescan and when a
// config is provisioned.
func TestFailedListingKeepsMembers(t *testing.T) {
	f, bs := newBrokenFixture(t, "unit-list-fails")
	want := []string{"a", "team/b"}
	bs.failList = true

	w := adminCall(t, testRemote, http.MethodPost, "/llm_proxy/pools/unit-list-fails/rescan", "", nil)
	wantStatus(t, w, http.StatusInternalServerError)
	if strings.Contains(w.Body.String(), "backend unavailable") {
		t.Fatalf("the storage's own error reached the admin client: %s", w.Body)
	}
	if got := poolIDs(f); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a failed rescan the pool holds %v, want %v", got, want)
	}

	// What Provision of a reloaded config does.
	next, err := pool.Attach(context.Background(), "unit-list-fails", pool.Config{
		Owner: "reloaded config",
		Store: auth.NewCaddyStore(bs, "llm_proxy/unit-list-fails/auths"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Detach()
	if got := poolIDs(f); !reflect.DeepEqual(got, want) {
		t.Fatalf("after provisioning on a failed listing the pool holds %v, want %v", got, want)
	}
}

// A directory named like a record does not stop the listing: the records
// load, the directory is reported, and a record that cannot be read keeps
// the copy already loaded.
func TestUnreadableKeysDoNotEmptyThePool(t *testing.T) {
	f, bs := newBrokenFixture(t, "unit-list-unreadable")
	if err := os.MkdirAll(filepath.Join(f.root, "llm_proxy", "unit-list-unreadable", "auths", "x.json", "y"), 0o700); err != nil {
		t.Fatal(err)
	}
	bs.failLoad = map[string]bool{"llm_proxy/unit-list-unreadable/auths/a.json": true}
	before, _ := f.p.Get("a")

	w := adminCall(t, testRemote, http.MethodPost, "/llm_proxy/pools/unit-list-unreadable/rescan", "", nil)
	wantStatus(t, w, http.StatusOK)
	var res rescanResult
	decodeJSON(t, w.Body.Bytes(), &res)
	if res.Stored != 2 || len(res.Skipped) != 2 {
		t.Fatalf("rescan answer: %s", w.Body)
	}
	if got := poolIDs(f); !reflect.DeepEqual(got, []string{"a", "team/b"}) {
		t.Fatalf("pool holds %v", got)
	}
	if after, _ := f.p.Get("a"); after.Auth() != before.Auth() {
		t.Fatal("the unreadable record's current copy was replaced")
	}
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}
