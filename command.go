package llmproxy

// The `caddy llm-proxy` command: logging in subscription credentials
// (SPEC section 12) without other tools and without a running Caddy.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/caddy-llm-proxy/llmproxy/internal/auth"
	"github.com/caddy-llm-proxy/llmproxy/internal/oauth"
	"github.com/caddy-llm-proxy/llmproxy/internal/pool"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm-proxy",
		Short: "Commands of the llm_proxy plugin: log in subscription credentials",
		Long: `
Commands of the llm_proxy plugin.

  login claude|codex --pool <name>   log in a Claude Pro/Max or ChatGPT
                                     subscription and store it in the pool
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(newLoginCommand())
		},
	})
}

// loginFlags are the options of `caddy llm-proxy login`.
type loginFlags struct {
	provider          string
	pool              string
	config, adapter   string
	id                string
	baseURL, proxyURL string
	noListener        bool
}

func newLoginCommand() *cobra.Command {
	var f loginFlags
	cmd := &cobra.Command{
		Use:   "login claude|codex --pool <name> [--config <path> [--adapter <name>]] [--id <id>] [--base-url <url>] [--proxy-url <url>] [--no-browser-listener]",
		Short: "Logs in a Claude or Codex subscription and stores it in a pool",
		Long: `
Logs in a subscription (Claude Pro/Max through Claude Code's OAuth, ChatGPT
through Codex's OAuth) and writes the credential into the storage of the
llm_proxy pool named by --pool, as configured in the config file (--config,
adapted with --adapter; default: the Caddyfile in the current directory).
No running Caddy is needed; a running one picks the credential up within
its rescan_interval, or at once with POST /llm_proxy/pools/<pool>/rescan.

The command prints a URL to open in a browser on any machine. After the
login, the browser is sent to the redirect URI (http://localhost:54545/callback
for claude, http://localhost:1455/auth/callback for codex, or the pool's
oauth redirect_uri). When the browser runs on this machine, the command
catches that redirect itself and finishes. Otherwise paste the URL the
browser was sent to (or the code the page shows) and press Enter.
--no-browser-listener turns the catching off.

The credential is named --id, default <provider>-<email>. Logging in to an
existing credential replaces its tokens and keeps its other fields.
--base-url and --proxy-url set those fields of the record; the code exchange
goes through the proxy (or the existing record's proxy_url).

The tokens are never printed.
`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("name one provider to log in with: %s", strings.Join(oauthProviders(), " or "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f.provider = args[0]
			return runLogin(cmd.Context(), f, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.pool, "pool", "", "Name of the llm_proxy pool to store the credential in (required)")
	fl.StringVarP(&f.config, "config", "c", "", "Configuration file (default: ./Caddyfile)")
	fl.StringVarP(&f.adapter, "adapter", "a", "", "Name of config adapter to apply")
	fl.StringVar(&f.id, "id", "", "Credential ID (default: <provider>-<email>)")
	fl.StringVar(&f.baseURL, "base-url", "", "base_url of the credential's record")
	fl.StringVar(&f.proxyURL, "proxy-url", "", "proxy_url of the credential's record, also used for the login")
	fl.BoolVar(&f.noListener, "no-browser-listener", false, "Do not listen on the redirect URI; only read the pasted answer")
	return cmd
}

// loginTarget is the pool a login writes into, as the config declares it.
type loginTarget struct {
	handler  *Handler
	pool     string
	store    *auth.CaddyStore
	settings oauth.Settings
	admin    string // the admin API's address, for the hint printed at the end
	cleanup  func()
}

// runLogin runs `caddy llm-proxy login`.
func runLogin(ctx context.Context, f loginFlags, in io.Reader, out, errOut io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.pool == "" {
		return errors.New("--pool is required: the name of the llm_proxy pool to store the credential in")
	}
	if f.config == "-" {
		return errors.New("--config - is not supported: standard input takes the pasted login answer")
	}
	fields, err := loginFieldFlags(f)
	if err != nil {
		return err
	}
	tgt, err := findLoginTarget(f)
	if err != nil {
		return err
	}
	defer tgt.cleanup()

	var existing []byte
	if f.id != "" {
		if existing, err = tgt.checkID(ctx, f.id, f.provider); err != nil {
			return err
		}
	}
	// Mistakes in the flags show before the user logs in.
	if _, err := pool.LoginRecord(orDefault(f.id, f.provider+"-check"), f.provider, oauth.Token{AccessToken: "check"}, nil, fields, time.Now()); err != nil {
		return err
	}
	if err := tgt.probe(ctx); err != nil {
		return err
	}

	login, err := oauth.NewLogin(tgt.settings.Endpoints, time.Now())
	if err != nil {
		return fmt.Errorf("pool %q: %v", tgt.pool, err)
	}
	var caught chan loginAnswer
	if !f.noListener {
		caught = make(chan loginAnswer)
		stop, err := listenForRedirect(login, caught)
		if err != nil {
			fmt.Fprintf(errOut, "Not catching the browser's redirect (%v); paste the answer instead.\n", err)
			caught = nil
		} else {
			defer stop()
		}
	}
	printLoginIntro(out, tgt, login)

	a, err := awaitAnswer(ctx, login, in, out, caught)
	if err != nil {
		return err
	}
	rec, replaced, err := tgt.complete(ctx, f, login, existing, fields, a.pasted)
	if a.reply != nil {
		a.reply <- err
	}
	if err != nil {
		return err
	}
	printLoginDone(out, tgt, rec, replaced)
	return nil
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// loginFieldFlags turns --base-url and --proxy-url into record fields.
func loginFieldFlags(f loginFlags) ([]byte, error) {
	m := map[string]string{}
	if f.baseURL != "" {
		m["base_url"] = f.baseURL
	}
	if f.proxyURL != "" {
		m["proxy_url"] = f.proxyURL
	}
	if len(m) == 0 {
		return nil, nil
	}
	return json.Marshal(m)
}

// findLoginTarget loads the config and finds the pool's handler, storage
// and OAuth settings, built as the running Caddy builds them: the
// handler's storage module if it has one, else the config's storage, else
// Caddy's default file system storage.
func findLoginTarget(f loginFlags) (*loginTarget, error) {
	cfgJSON, file, _, err := caddycmd.LoadConfig(f.config, f.adapter)
	if err != nil {
		return nil, fmt.Errorf("loading the config: %v", err)
	}
	if len(cfgJSON) == 0 {
		return nil, errors.New("no config: pass --config <file>, the config Caddy runs with (no Caddyfile in the current directory)")
	}
	if file == "" {
		file = "the config"
	}
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("decoding %s: %v", file, err)
	}
	var tree any
	if err := json.Unmarshal(cfgJSON, &tree); err != nil {
		return nil, fmt.Errorf("decoding %s: %v", file, err)
	}
	repl := caddy.NewReplacer()
	var found []*Handler
	var names []string
	for _, raw := range llmProxyHandlers(tree) {
		h := new(Handler)
		if err := json.Unmarshal(raw, h); err != nil {
			return nil, fmt.Errorf("decoding an llm_proxy handler of %s: %v", file, err)
		}
		name := repl.ReplaceKnown(h.Pool, "")
		if name == "" {
			name = DefaultPool
		}
		names = append(names, name)
		if name == f.pool {
			h.Pool = name
			found = append(found, h)
		}
	}
	switch {
	case len(names) == 0:
		return nil, fmt.Errorf("%s has no llm_proxy handler", file)
	case len(found) == 0:
		sort.Strings(names)
		return nil, fmt.Errorf("%s has no llm_proxy pool %q; its pools: %s", file, f.pool, strings.Join(slices.Compact(names), ", "))
	case len(found) > 1:
		return nil, fmt.Errorf("pool %q is used by more than one llm_proxy handler in %s; give each handler its own pool name", f.pool, file)
	}
	h := found[0]

	settings, err := h.oauthSettings(repl)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %v", f.pool, err)
	}
	s, ok := settings[f.provider]
	if !ok {
		return nil, fmt.Errorf("provider %q has no OAuth login; expected one of %s", f.provider, strings.Join(oauthProviders(), ", "))
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	storage, err := loginStorage(ctx, h, &cfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("pool %q: %v", f.pool, err)
	}
	prefix := repl.ReplaceKnown(h.StoragePrefix, "")
	if prefix == "" {
		prefix = "llm_proxy/" + h.Pool + "/auths" // as provisionStore does
	}
	admin := caddy.DefaultAdminListen
	if cfg.Admin != nil && cfg.Admin.Listen != "" {
		admin = cfg.Admin.Listen
	}
	return &loginTarget{
		handler:  h,
		pool:     f.pool,
		store:    auth.NewCaddyStore(storage, prefix),
		settings: s,
		admin:    admin,
		cleanup:  cancel,
	}, nil
}

// loginStorage builds the storage of h's records.
func loginStorage(ctx caddy.Context, h *Handler, cfg *caddy.Config) (certmagic.Storage, error) {
	var mod any
	var err error
	switch {
	case h.StorageRaw != nil:
		mod, err = ctx.LoadModule(h, "StorageRaw")
	case cfg.StorageRaw != nil:
		mod, err = ctx.LoadModule(cfg, "StorageRaw")
	default:
		return caddy.DefaultStorage, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading storage: %v", err)
	}
	sc, ok := mod.(caddy.StorageConverter)
	if !ok {
		return nil, fmt.Errorf("storage module %T is not a Caddy storage", mod)
	}
	s, err := sc.CertMagicStorage()
	if err != nil {
		return nil, fmt.Errorf("creating storage: %v", err)
	}
	return s, nil
}

// llmProxyHandlers finds the llm_proxy handlers anywhere in a config
// (subroutes included): every JSON object with "handler": "llm_proxy".
func llmProxyHandlers(v any) []json.RawMessage {
	var out []json.RawMessage
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "llm_proxy" {
			b, _ := json.Marshal(v) // decoded from JSON: always encodes
			return []json.RawMessage{b}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, llmProxyHandlers(v[k])...)
		}
	case []any:
		for _, x := range v {
			out = append(out, llmProxyHandlers(x)...)
		}
	}
	return out
}

// checkID checks that the credential id can take a login with provider and
// returns its stored document, nil when there is none.
func (t *loginTarget) checkID(ctx context.Context, id, provider string) ([]byte, error) {
	if err := auth.ValidateID(id); err != nil {
		return nil, err
	}
	for _, ia := range t.handler.Auths {
		if ia != nil && ia.ID == id {
			return nil, fmt.Errorf("credential %q of pool %q is declared in the config (inline); log in under another id", id, t.pool)
		}
	}
	existing, err := pool.LoadDocument(ctx, t.store, id)
	if err != nil {
		return nil, fmt.Errorf("storage of pool %q unusable: %v", t.pool, err)
	}
	if err := pool.CheckRelogin(id, provider, existing); err != nil {
		return nil, err
	}
	return existing, nil
}

// probe takes and releases the storage lock of the pool's records, so an
// unusable storage shows before the user logs in.
func (t *loginTarget) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key := t.store.Prefix + "/.login-check"
	if err := t.store.Storage.Lock(ctx, key); err != nil {
		return fmt.Errorf("storage of pool %q unusable: %v", t.pool, err)
	}
	if err := t.store.Storage.Unlock(ctx, key); err != nil {
		return fmt.Errorf("storage of pool %q unusable: %v", t.pool, err)
	}
	return nil
}

// complete exchanges the pasted answer and writes the record.
func (t *loginTarget) complete(ctx context.Context, f loginFlags, login *oauth.Login, existing, fields []byte, pasted string) (*auth.Auth, bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	tok, err := pool.ExchangeLogin(ctx, login, loginClient(pool.LoginProxyURL(existing, fields)), pasted, time.Now())
	if err != nil {
		return nil, false, fmt.Errorf("logging in: %v", err)
	}
	id := f.id
	if id == "" {
		id = pool.LoginAuthID(f.provider, tok, time.Now())
		if existing, err = t.checkID(ctx, id, f.provider); err != nil {
			return nil, false, err
		}
	}
	rec, err := pool.LoginRecord(id, f.provider, tok, existing, fields, time.Now())
	if err != nil {
		return nil, false, err
	}
	if _, err := t.store.Save(ctx, rec); err != nil {
		return nil, false, fmt.Errorf("writing credential %q to the storage of pool %q: %v", id, t.pool, err)
	}
	return rec, existing != nil, nil
}

// loginClient is the HTTP client of the code exchange: Go's default
// transport (which honours HTTPS_PROXY), or proxyURL.
func loginClient(proxyURL string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u, err := url.Parse(proxyURL); proxyURL != "" && err == nil {
		tr.Proxy = http.ProxyURL(u)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func printLoginIntro(out io.Writer, t *loginTarget, login *oauth.Login) {
	fmt.Fprintf(out, `Logging in to %s for llm_proxy pool %q.

1. Open this URL in a browser and log in:

%s

2. The browser is then sent to %s
   On this machine the login finishes by itself. Elsewhere that page may not
   load: copy the URL from the address bar (or the code the page shows),
   paste it here and press Enter. The login expires in %v.

`, login.Endpoints.AuthorizeURL, t.pool, login.URL(), login.Endpoints.RedirectURI, oauth.LoginTTL)
}

func printLoginDone(out io.Writer, t *loginTarget, rec *auth.Auth, replaced bool) {
	who := rec.Email
	if who == "" {
		who = rec.AccountID
	}
	what := "a new record"
	if replaced {
		what = "new tokens; its other fields kept"
	}
	fmt.Fprintf(out, "Logged in %s (%s).\nWrote credential %q of pool %q to storage key %s (%s).\n",
		who, rec.Provider, rec.ID, t.pool, t.store.Key(rec.ID), what)
	fmt.Fprintf(out, "A running Caddy with this config picks it up within its rescan_interval, or at once with\n  POST http://%s/llm_proxy/pools/%s/rescan", t.admin, t.pool)
	if t.handler.ManagementSecret != "" {
		fmt.Fprint(out, " (with the pool's management secret)")
	}
	fmt.Fprintln(out)
}

// loginAnswer is what the user pasted, or the redirect the listener
// caught; reply, when set, gets the outcome for the browser.
type loginAnswer struct {
	pasted string
	reply  chan<- error
}

// awaitAnswer waits for a pasted line that holds a code of this login, or
// for the redirect the listener caught, until the login expires. A line
// without a code or with another login's state is explained and skipped.
func awaitAnswer(ctx context.Context, login *oauth.Login, in io.Reader, out io.Writer, caught <-chan loginAnswer) (loginAnswer, error) {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 16<<10), 64<<10)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expiry := time.NewTimer(time.Until(login.Created.Add(oauth.LoginTTL)))
	defer expiry.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				if caught == nil {
					return loginAnswer{}, errors.New("no answer pasted: standard input closed")
				}
				continue
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			_, state, err := oauth.ParseCode(line)
			switch {
			case err != nil:
				fmt.Fprintf(out, "%v. Paste again:\n", err)
			case state != "" && state != login.State:
				fmt.Fprintln(out, "That answer belongs to another login: paste the answer to the URL above.")
			default:
				return loginAnswer{pasted: line}, nil
			}
		case a := <-caught:
			return a, nil
		case <-expiry.C:
			return loginAnswer{}, fmt.Errorf("the login expired after %v; run the command again", oauth.LoginTTL)
		case <-ctx.Done():
			return loginAnswer{}, ctx.Err()
		}
	}
}

// listenForRedirect serves the login's redirect URI when it is a plain
// http URL on this machine, handing the redirect that carries this
// login's state to answers and telling the browser how the login ended.
func listenForRedirect(login *oauth.Login, answers chan<- loginAnswer) (stop func(), err error) {
	u, err := url.Parse(login.Endpoints.RedirectURI)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("the redirect URI is not a plain http URL")
	}
	switch strings.ToLower(u.Hostname()) {
	case "localhost", "127.0.0.1", "::1":
	default:
		return nil, fmt.Errorf("the redirect URI %s is not on this machine", u.Host)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	quit := make(chan struct{})
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			if r.URL.Query().Get("state") != login.State {
				browserPage(w, http.StatusBadRequest, "This is not the answer of the login in progress. Open the URL the command printed.")
				return
			}
			done := make(chan error, 1)
			select {
			case answers <- loginAnswer{pasted: "http://" + u.Host + r.URL.RequestURI(), reply: done}:
			case <-quit:
				browserPage(w, http.StatusGone, "The login already ended.")
				return
			case <-r.Context().Done():
				return
			}
			if err := <-done; err != nil {
				browserPage(w, http.StatusBadGateway, "The login failed: "+err.Error())
				return
			}
			browserPage(w, http.StatusOK, "Logged in. You can close this window.")
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		close(quit)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func browserPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><title>llm_proxy login</title><p>%s</p>\n", html.EscapeString(msg))
}
