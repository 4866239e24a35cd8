package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strings"

	"github.com/caddyserver/certmagic"
)

// Store keeps credential records.
type Store interface {
	// List returns every record that parses, sorted by ID. Records that
	// cannot be read or parsed are skipped and returned in bad, so one bad
	// key never hides the others. err is set only when the records could
	// not be listed; the caller should then keep what it had.
	List(ctx context.Context) (auths []*Auth, bad []LoadError, err error)

	// Save writes a validated record, atomically and under the storage
	// lock of its key. When the stored JSON document is equal to the new
	// one the write is skipped and changed is false.
	Save(ctx context.Context, a *Auth) (changed bool, err error)

	// Update changes the record id in one read-modify-write under the
	// storage lock of its key, so that no other writer's change is lost
	// (several Caddy instances refreshing one OAuth credential): fn gets
	// the stored record, nil when there is none or it does not parse, and
	// returns the record to write, or nil to write nothing. The write is atomic and skipped when
	// the JSON is unchanged. Update returns the record stored after the
	// call (nil when there is none) and whether it was written.
	Update(ctx context.Context, id string, fn func(cur *Auth) (*Auth, error)) (rec *Auth, changed bool, err error)

	// Delete removes the record id. Deleting a missing record is not an
	// error.
	Delete(ctx context.Context, id string) error
}

// LoadError is a stored record that could not be loaded.
type LoadError struct {
	Key string // storage key of the record
	// ID is the record ID the key names, "" when that is not a valid ID.
	ID string
	// Unreadable is set when the key could not be read at all (a
	// directory, a file without read permission, a storage failure), as
	// opposed to read but not parsed: the record may still be fine, and a
	// caller may keep the copy it already has.
	Unreadable bool
	Err        error
}

func (e LoadError) Error() string { return fmt.Sprintf("loading %s: %v", e.Key, e.Err) }

func (e LoadError) Unwrap() error { return e.Err }

// recordSuffix ends the key of every record.
const recordSuffix = ".json"

// maxIDLen is the longest record ID accepted.
const maxIDLen = 200

// CaddyStore is a Store over a Caddy (certmagic) storage: one JSON document
// per record at <Prefix>/<id>.json.
//
// Writes go through Storage.Store under Storage.Lock on the record's key.
// Caddy's default file storage writes a temporary file in the same directory
// and renames it over the record, so readers never see a partial record;
// other storage modules give their own guarantees.
type CaddyStore struct {
	// Storage holds the records.
	Storage certmagic.Storage
	// Prefix is the storage key the records live under, without leading or
	// trailing slashes, e.g. "llm_proxy/default/auths". It must not be
	// empty.
	Prefix string
}

// NewCaddyStore returns a store of the records under prefix in s. Leading
// and trailing slashes of prefix are ignored.
func NewCaddyStore(s certmagic.Storage, prefix string) *CaddyStore {
	return &CaddyStore{Storage: s, Prefix: strings.Trim(prefix, "/")}
}

// Key returns the storage key of the record id.
func (s *CaddyStore) Key(id string) string {
	return s.prefix() + "/" + id + recordSuffix
}

func (s *CaddyStore) prefix() string { return strings.Trim(s.Prefix, "/") }

func (s *CaddyStore) check() error {
	if s.Storage == nil {
		return errors.New("auth store has no storage")
	}
	if s.prefix() == "" {
		return errors.New("auth store has no storage prefix")
	}
	return nil
}

// listAttempts bounds how often List re-lists a prefix that exists but
// whose listing failed with "not exist", which a file storage reports when
// a file disappears during the walk (the temporary file of a concurrent
// write, a record being deleted).
const listAttempts = 5

// List implements Store. A missing prefix is an empty store. Keys not
// ending in ".json" (lock files, temporary files, notes) are ignored, and a
// record deleted between listing and loading is left out. A key that
// cannot be read (e.g. a directory named "x.json") is reported in bad as
// Unreadable and the listing goes on.
func (s *CaddyStore) List(ctx context.Context) ([]*Auth, []LoadError, error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	prefix := s.prefix()
	var keys []string
	for attempt := 1; ; attempt++ {
		var err error
		keys, err = s.Storage.List(ctx, prefix, true)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("listing %s: %w", prefix, err)
		}
		if !s.Storage.Exists(ctx, prefix) {
			return nil, nil, nil
		}
		if attempt == listAttempts {
			return nil, nil, fmt.Errorf("listing %s: %w", prefix, err)
		}
	}

	var auths []*Auth
	var bad []LoadError
	seen := make(map[string]bool, len(keys))
	for _, key := range keys {
		id, ok := s.idOf(key)
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		if err := ValidateID(id); err != nil {
			bad = append(bad, LoadError{Key: key, Err: err})
			continue
		}
		data, err := s.Storage.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			bad = append(bad, LoadError{Key: key, ID: id, Unreadable: true, Err: s.readError(ctx, key, err)})
			continue
		}
		a, err := Parse(id, data)
		if err != nil {
			bad = append(bad, LoadError{Key: key, ID: id, Err: err})
			continue
		}
		auths = append(auths, a)
	}
	sort.Slice(auths, func(i, j int) bool { return auths[i].ID < auths[j].ID })
	return auths, bad, nil
}

// readError explains why key could not be loaded: a directory is named as
// such, anything else is the storage's own error.
func (s *CaddyStore) readError(ctx context.Context, key string, err error) error {
	if info, serr := s.Storage.Stat(ctx, key); serr == nil && !info.IsTerminal {
		return errors.New("a directory, not a record: rename or remove it in storage")
	}
	return fmt.Errorf("reading: %w", err)
}

// idOf returns the record ID of a listed key, false if the key is not a
// record of this store.
func (s *CaddyStore) idOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.Trim(key, "/"), s.prefix()+"/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, recordSuffix)
	return id, ok && id != ""
}

// Save implements Store. Inline credentials are refused. The record is
// written indented, and when it was decoded from storage its unknown
// fields are written back. changed reports whether the record was written,
// also when err reports that the lock could not be released afterwards.
func (s *CaddyStore) Save(ctx context.Context, a *Auth) (changed bool, err error) {
	if err := s.check(); err != nil {
		return false, err
	}
	data, err := s.encode(a)
	if err != nil {
		return false, err
	}
	return UpdateDocument(ctx, s.Storage, s.Key(a.ID), func([]byte) ([]byte, error) { return data, nil })
}

// Update implements Store. A stored document that does not parse is
// passed to fn as nil, like a missing one: fn may replace it.
func (s *CaddyStore) Update(ctx context.Context, id string, fn func(cur *Auth) (*Auth, error)) (rec *Auth, changed bool, err error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	if err := ValidateID(id); err != nil {
		return nil, false, err
	}
	changed, err = UpdateDocument(ctx, s.Storage, s.Key(id), func(old []byte) ([]byte, error) {
		var cur *Auth
		if old != nil {
			cur, _ = Parse(id, old) // nil when it does not parse
		}
		rec = cur
		next, err := fn(cur)
		if err != nil || next == nil {
			return nil, err
		}
		if next.ID != id {
			return nil, fmt.Errorf("auth %q: update returned record %q", id, next.ID)
		}
		data, err := s.encode(next)
		if err != nil {
			return nil, err
		}
		rec = next
		return data, nil
	})
	if err != nil && !changed {
		return nil, false, err
	}
	return rec, changed, err
}

// encode validates a record and returns its document as written: indented,
// with the unknown fields it was decoded with.
func (s *CaddyStore) encode(a *Auth) ([]byte, error) {
	if a.Inline {
		return nil, fmt.Errorf("auth %q is inline: inline credentials are never written to storage", a.ID)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	doc, err := a.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("auth %q: %w", a.ID, err)
	}
	var data bytes.Buffer
	if err := json.Indent(&data, doc, "", "  "); err != nil {
		return nil, fmt.Errorf("auth %q: %w", a.ID, err)
	}
	data.WriteByte('\n')
	return data.Bytes(), nil
}

// UpdateDocument changes the document at key in st in one
// read-modify-write under the storage lock named key, the lock Save and
// Update take: fn gets the stored document, nil when there is none, and
// returns the new one, or nil to leave storage as it is. The write is
// skipped when the new document holds the same JSON value as the stored
// one. changed reports whether it was written, also when err reports that
// the lock could not be released afterwards. The lock is released even
// when ctx is cancelled.
func UpdateDocument(ctx context.Context, st certmagic.Storage, key string, fn func(old []byte) ([]byte, error)) (changed bool, err error) {
	err = locked(ctx, st, key, func() error {
		old, err := st.Load(ctx, key)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			old = nil
		case err != nil:
			return fmt.Errorf("loading %s: %w", key, err)
		}
		data, err := fn(old)
		if err != nil || data == nil || (old != nil && sameDocument(old, data)) {
			return err
		}
		if err := st.Store(ctx, key, data); err != nil {
			return fmt.Errorf("storing %s: %w", key, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// Delete implements Store.
func (s *CaddyStore) Delete(ctx context.Context, id string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	key := s.Key(id)
	return s.locked(ctx, key, func() error {
		// A file storage deletes directories recursively: never take a
		// directory that happens to be named like a record, with whatever
		// it holds.
		if info, err := s.Storage.Stat(ctx, key); err == nil && !info.IsTerminal {
			return fmt.Errorf("deleting %s: a directory, not a record: remove it in storage by hand", key)
		}
		err := s.Storage.Delete(ctx, key)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting %s: %w", key, err)
		}
		return nil
	})
}

// locked runs fn holding the storage lock named key.
func (s *CaddyStore) locked(ctx context.Context, key string, fn func() error) error {
	return locked(ctx, s.Storage, key, fn)
}

// locked runs fn holding the lock named key of st. The lock is released
// even when ctx is cancelled.
func locked(ctx context.Context, st certmagic.Storage, key string, fn func() error) error {
	if err := st.Lock(ctx, key); err != nil {
		return fmt.Errorf("locking %s: %w", key, err)
	}
	err := fn()
	if uerr := st.Unlock(context.WithoutCancel(ctx), key); uerr != nil {
		err = errors.Join(err, fmt.Errorf("unlocking %s: %w", key, uerr))
	}
	return err
}

// sameDocument reports whether a and b hold equal JSON values. Numbers are
// compared as written.
func sameDocument(a, b []byte) bool {
	va, err := decodeDocument(a)
	if err != nil {
		return false
	}
	vb, err := decodeDocument(b)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func decodeDocument(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// ValidateID checks a credential ID: 1 to 200 characters from A-Z, a-z,
// 0-9 and "._@+-/", where "/" separates non-empty path segments other
// than "." and "..", no segment ending in ".json" (in any case). The ID
// names a storage key, <prefix>/<id>.json; a segment ending in ".json"
// would make a directory that storage listings take for a record.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("empty credential ID")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("credential ID longer than %d characters", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("._@+-/", c) >= 0:
		default:
			return fmt.Errorf("credential ID %q: character %q not allowed (allowed: A-Z a-z 0-9 . _ @ + - /)", id, c)
		}
	}
	for seg := range strings.SplitSeq(id, "/") {
		switch seg {
		case "":
			return fmt.Errorf("credential ID %q: empty path segment (leading, trailing or double \"/\")", id)
		case ".", "..":
			return fmt.Errorf("credential ID %q: path segment %q not allowed", id, seg)
		}
		if len(seg) >= len(recordSuffix) && strings.EqualFold(seg[len(seg)-len(recordSuffix):], recordSuffix) {
			return fmt.Errorf("credential ID %q: path segment %q ends in %q, which storage keeps for records", id, seg, recordSuffix)
		}
	}
	if strings.Contains(id, "..") {
		return fmt.Errorf("credential ID %q: \"..\" not allowed", id)
	}
	return nil
}
