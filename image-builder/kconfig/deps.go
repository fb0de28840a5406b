package kconfig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// Definition is one "config"/"menuconfig" entry of a symbol with the
// dependencies that apply to it: its own "depends on" lines plus those of
// enclosing if/menu/choice blocks.
type Definition struct {
	File      string
	Line      int
	DependsOn []string
}

// Deps indexes symbol definitions (names without CONFIG_) in a Kconfig tree.
type Deps struct {
	Symbols map[string][]Definition
}

// ParseKconfigTree reads the Kconfig tree rooted at root inside fsys,
// following source statements. vars substitutes $(NAME) in source paths
// (SRCARCH for example).
func ParseKconfigTree(fsys fs.FS, root string, vars map[string]string) (*Deps, error) {
	p := &kparser{fsys: fsys, vars: vars, deps: &Deps{Symbols: map[string][]Definition{}}}
	if err := p.parseFile(root, nil, 0); err != nil {
		return nil, err
	}
	return p.deps, nil
}

type kparser struct {
	fsys fs.FS
	vars map[string]string
	deps *Deps
}

// block is an enclosing if/menu/choice with its conditions.
type block struct {
	kind string // "if", "menu", "choice"
	deps []string
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z0-9_]+)\)`)

const maxSourceDepth = 32

func (p *kparser) parseFile(name string, outer []block, depth int) error {
	if depth > maxSourceDepth {
		return fmt.Errorf("kconfig %s: source nesting deeper than %d", name, maxSourceDepth)
	}
	data, err := fs.ReadFile(p.fsys, name)
	if err != nil {
		return fmt.Errorf("read kconfig: %w", err)
	}
	f := &fileParser{p: p, name: name, depth: depth, outer: len(outer), stack: append([]block(nil), outer...)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f.lineNo++
		text, ok := f.logicalLine(sc.Text())
		if !ok {
			continue
		}
		if err := f.statement(text); err != nil {
			return err
		}
	}
	f.flush()
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read kconfig %s: %w", name, err)
	}
	if len(f.stack) != len(outer) {
		return fmt.Errorf("kconfig %s: %w: %d unclosed if/menu/choice block(s)", name, ErrSyntax, len(f.stack)-len(outer))
	}
	return nil
}

// fileParser is the state of parsing one Kconfig file: the open blocks,
// the entry being read and where the line is (help text, continuation).
type fileParser struct {
	p      *kparser
	name   string
	depth  int
	outer  int // blocks opened by the files that sourced this one
	stack  []block
	lineNo int

	entry     *Definition
	entryName string

	inHelp     bool
	helpIndent int
	pending    string // a line continued with a backslash
	// headerOpen is set between a menu or choice line and its first entry:
	// "depends on" lines there belong to the block, not to an entry.
	headerOpen bool
}

// flush records the entry being read, with the conditions of its blocks.
func (f *fileParser) flush() {
	if f.entry == nil {
		return
	}
	for _, b := range f.stack {
		f.entry.DependsOn = append(f.entry.DependsOn, b.deps...)
	}
	f.p.deps.Symbols[f.entryName] = append(f.p.deps.Symbols[f.entryName], *f.entry)
	f.entry = nil
}

// logicalLine skips help text, joins continued lines and drops blank and
// comment lines; ok is false when raw completes no statement.
func (f *fileParser) logicalLine(raw string) (text string, ok bool) {
	if f.inHelp {
		trimmed := strings.TrimSpace(raw)
		ind := indentOf(raw)
		if trimmed == "" {
			return "", false
		}
		if f.helpIndent < 0 {
			f.helpIndent = ind
			return "", false
		}
		if ind >= f.helpIndent {
			return "", false
		}
		f.inHelp = false
	}
	if strings.HasSuffix(raw, "\\") {
		f.pending += strings.TrimSuffix(raw, "\\") + " "
		return "", false
	}
	text = strings.TrimSpace(f.pending + raw)
	f.pending = ""
	if text == "" || strings.HasPrefix(text, "#") {
		return "", false
	}
	return text, true
}

// statement handles one logical line by its keyword.
func (f *fileParser) statement(text string) error {
	kw, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexByte(kw, '\t'); i >= 0 {
		kw, rest = kw[:i], kw[i+1:]+" "+rest
	}
	rest = strings.TrimSpace(rest)
	switch kw {
	case "config", "menuconfig":
		f.flush()
		f.headerOpen = false
		f.entryName = rest
		f.entry = &Definition{File: f.name, Line: f.lineNo}
	case "depends":
		expr := stripComment(strings.TrimSpace(strings.TrimPrefix(rest, "on")))
		switch {
		case f.entry != nil:
			f.entry.DependsOn = append(f.entry.DependsOn, expr)
		case f.headerOpen && len(f.stack) > 0:
			f.stack[len(f.stack)-1].deps = append(f.stack[len(f.stack)-1].deps, expr)
		}
	case "help", "---help---":
		f.inHelp = true
		f.helpIndent = -1
	case "if":
		f.flush()
		f.headerOpen = false
		f.stack = append(f.stack, block{kind: "if", deps: []string{stripComment(rest)}})
	case "menu", "choice":
		f.flush()
		f.stack = append(f.stack, block{kind: kw})
		f.headerOpen = true
	case "endif", "endmenu", "endchoice":
		f.flush()
		f.headerOpen = false
		want := map[string]string{"endif": "if", "endmenu": "menu", "endchoice": "choice"}[kw]
		if len(f.stack) <= f.outer || f.stack[len(f.stack)-1].kind != want {
			return fmt.Errorf("kconfig %s:%d: %w: unbalanced %s", f.name, f.lineNo, ErrSyntax, kw)
		}
		f.stack = f.stack[:len(f.stack)-1]
	case "source", "rsource", "osource", "orsource":
		f.flush()
		f.headerOpen = false
		return f.source(kw, rest)
	case "comment", "mainmenu":
		f.flush()
		f.headerOpen = false
	default:
		// Attributes (bool, select, default, prompt, visible, ...) need
		// nothing here; they belong to the current entry or header.
	}
	return nil
}

// source parses the files a source statement names (relative for the r
// forms, optional for the o forms, globs expanded), inside the open blocks.
func (f *fileParser) source(kw, rest string) error {
	p := f.p
	target := strings.Trim(stripComment(rest), `"`)
	target = varRef.ReplaceAllStringFunc(target, func(v string) string {
		return p.vars[varRef.FindStringSubmatch(v)[1]]
	})
	if strings.HasPrefix(kw, "r") || strings.HasPrefix(kw, "or") {
		target = path.Join(path.Dir(f.name), target)
	}
	matches := []string{target}
	if strings.ContainsAny(target, "*?[") {
		m, err := fs.Glob(p.fsys, target)
		if err != nil {
			return fmt.Errorf("kconfig %s:%d: glob %q: %w", f.name, f.lineNo, target, err)
		}
		matches = m
	}
	for _, t := range matches {
		err := p.parseFile(t, f.stack, f.depth+1)
		if err != nil && strings.HasPrefix(kw, "o") && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", f.name, f.lineNo, err)
		}
	}
	return nil
}

func indentOf(s string) int {
	n := 0
	for _, c := range s {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 8 - n%8
		default:
			return n
		}
	}
	return n
}

func stripComment(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

var symbolToken = regexp.MustCompile(`[A-Za-z0-9_]+`)

// Explain describes why symbol (without CONFIG_) may be unmet in cfg: one
// line per definition, each listing its dependencies annotated with the
// values the referenced symbols have in cfg, like menuconfig does.
func (d *Deps) Explain(symbol string, cfg Config) []string {
	if d == nil {
		return nil
	}
	defs := d.Symbols[symbol]
	var out []string
	for _, def := range defs {
		if len(def.DependsOn) == 0 {
			out = append(out, fmt.Sprintf("%s:%d: no \"depends on\" (set only by select, a choice or a default?)", def.File, def.Line))
			continue
		}
		parts := make([]string, 0, len(def.DependsOn))
		for _, e := range def.DependsOn {
			parts = append(parts, annotate(e, cfg))
		}
		out = append(out, fmt.Sprintf("%s:%d: depends on %s", def.File, def.Line, strings.Join(parts, " && ")))
	}
	if len(defs) == 0 {
		out = append(out, fmt.Sprintf("no Kconfig definition of %s found (misspelt or removed in this kernel?)", symbol))
	}
	return out
}

func annotate(expr string, cfg Config) string {
	annotated := symbolToken.ReplaceAllStringFunc(expr, func(tok string) string {
		if tok == "y" || tok == "n" || tok == "m" || strings.Trim(tok, "0123456789") == "" {
			return tok
		}
		return fmt.Sprintf("%s [=%s]", tok, cfg.Value("CONFIG_"+tok))
	})
	if strings.Contains(expr, "||") && !(strings.HasPrefix(expr, "(") && strings.HasSuffix(expr, ")")) {
		return "(" + annotated + ")"
	}
	return annotated
}
