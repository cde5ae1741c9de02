// Package webui holds what wapper-host's device console and wapper-cloud's
// fleet console share, served by both under /console/: the style sheet
// (console.css) and the bearer-token form (token.js).
package webui

import "embed"

// Files holds console.css and token.js.
//
//go:embed console.css token.js
var Files embed.FS
