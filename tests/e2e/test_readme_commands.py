"""The commands the documentation shows use flags that exist.

Scans every Markdown file of the repository for commands: lines of fenced
code blocks (with their backslash continuations) and inline code spans that
start a command. For each call of `saferoute <command>` (any path to the
binary), `scripts/fit.sh` (which runs `saferoute fit`) and
`bench/load_bench.py`, every `--flag` must be one that the program's own
`--help` lists; `--serve-arg=--x` / `--serve-arg --x` values are checked
against `saferoute serve`. A README example that fails with "unknown flag"
(such as `fit.sh --small DIR` when the flag is `--small-model`) fails here.

Usage: test_readme_commands.py --saferoute BIN [--root REPO]
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import unittest

ARGS = None
FLAG = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")
SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


def markdown_files(root):
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "out")]
        for name in files:
            if name.endswith(".md"):
                yield os.path.join(base, name)


def command_lines(text):
    """Shell command lines of fenced blocks (continuations joined) and inline code spans."""
    lines, in_fence, pending = [], False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_fence = not in_fence
            pending = ""
            continue
        if in_fence:
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            lines.append(line)
        else:
            lines.extend(re.findall(r"`([^`]+)`", raw))
    return lines


def tokens(line):
    line = line.split(" #", 1)[0]  # trailing shell comment
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def invocations(line):
    """(program, [flags...]) for each documented call on one line; program is
    'fit.sh', 'load_bench.py' or 'saferoute <command>'."""
    words = tokens(line)
    found = []
    i = 0
    while i < len(words):
        word = words[i]
        program = None
        if word.endswith("fit.sh"):
            program = "saferoute fit"
        elif word.endswith("load_bench.py"):
            program = "load_bench.py"
        elif os.path.basename(word) == "saferoute" and i + 1 < len(words) and \
                re.fullmatch(r"[a-z][a-z-]*", words[i + 1]):
            program = "saferoute " + words[i + 1]
            i += 1
        if program is None:
            i += 1
            continue
        flags = []
        i += 1
        while i < len(words) and words[i] not in SEPARATORS:
            # "[--config f.toml]" and "--x=1" both name --config / --x.
            flags.extend(m.group(1) for m in FLAG.finditer(words[i]))
            i += 1
        found.append((program, flags))
    return found


def help_flags(program, cache={}):
    if program not in cache:
        if program == "load_bench.py":
            cmd = [sys.executable, os.path.join(ARGS.root, "bench/load_bench.py"), "--help"]
        else:
            cmd = [ARGS.saferoute, *program.split()[1:], "--help"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
        cache[program] = set(FLAG.findall(out.stdout))
    return cache[program]


class ReadmeCommandsTest(unittest.TestCase):
    def test_documented_flags_exist(self):
        problems, checked = [], 0
        for path in sorted(markdown_files(ARGS.root)):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            rel = os.path.relpath(path, ARGS.root)
            for line in command_lines(text):
                for program, flags in invocations(line):
                    known = help_flags(program)
                    for flag in flags:
                        checked += 1
                        if program == "load_bench.py" and flag != "--serve-arg" and \
                                flag not in known and flag in help_flags("saferoute serve"):
                            continue  # the value of --serve-arg
                        if flag not in known:
                            problems.append(f"{rel}: `{line}`: {program} has no flag {flag}")
        self.assertGreater(checked, 5, "no documented command found: is the scan broken?")
        self.assertEqual(problems, [], "\n" + "\n".join(problems))

    def test_the_scan_sees_a_wrong_flag(self):
        # The checker itself: a made-up flag in a fenced block is found.
        text = "```sh\n./scripts/fit.sh --small-model m \\\n   --no-such-flag x\n```\n"
        calls = [c for line in command_lines(text) for c in invocations(line)]
        self.assertEqual(calls, [("saferoute fit", ["--small-model", "--no-such-flag"])])
        self.assertNotIn("--no-such-flag", help_flags("saferoute fit"))
        self.assertIn("--small-model", help_flags("saferoute fit"))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--saferoute", required=True)
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "../.."))
    ARGS, rest = parser.parse_known_args()
    ARGS.root = os.path.abspath(ARGS.root)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
