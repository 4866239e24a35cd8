package session

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// ClientOf names the client of r for [Cache.BindFor]: "user:" and the
// authenticated user ({http.auth.user.id}, set by llm_proxy's access check
// or a Caddy authentication handler before it), else "ip:" and the
// client's IP address as Caddy determined it (trusted proxies honoured),
// an IPv6 address by its /64, as one host usually holds a whole /64.
func ClientOf(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if user, _ := repl.GetString("http.auth.user.id"); user != "" {
			return "user:" + user
		}
	}
	host, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if host == "" {
		var err error
		if host, _, err = net.SplitHostPort(r.RemoteAddr); err != nil {
			host = r.RemoteAddr
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "ip:" + host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return "ip:" + p.String()
		}
	}
	return "ip:" + ip.String()
}
