package tokenserver

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// NormalizeHost turns a workspace URL as the SDKs send it in X-Databricks-Host (the Go SDK sends
// scheme://host[:port] after its own clean-up, the Python SDK its configured host, with https://
// added when it was missing) or as DATABRICKS_HOST holds it, into scheme://host:port with a lower-
// case host and an explicit port, so that equal workspaces compare equal: https://ADB-1.azure
// databricks.net/, adb-1.azuredatabricks.net and https://adb-1.azuredatabricks.net:443 are one.
// Paths, queries and user info are not part of a workspace's identity and are refused.
func NormalizeHost(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("empty host")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", errors.New("scheme is not https")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", errors.New("a workspace host has no path, query or user info")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("no host name")
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port), nil
}
