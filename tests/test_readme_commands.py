"""Every `python -m regjax.main` command that README.md shows runs as shown.

The commands are found wherever the README puts them (fenced blocks other than Python,
and inline code), so that a rewritten README is checked too. Each runs from the
repository root with `:smoke` added to its --config (the full comparisons take minutes;
smoke keeps their variants and flags), a fresh --workdir and no compilation cache.
A command followed in its block by `regjax: error: ...` lines, or commented
`# exit status N`, is documented to fail: it must fail with that status and message.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests import paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Stand-ins the README uses for a folder with the MNIST IDX files.
MNIST_PLACEHOLDERS = ('/path/to/mnist', '/data/mnist')
# The start of a command: any python (python3, .venv/bin/python) running regjax.main.
_COMMAND = re.compile(r'(?:^|(?<=[\s;&|(]))(?:\S*/)?python[\d.]*\s+-m\s+regjax\.main\b')
_FENCE = re.compile(r'^[ \t]*(`{3,}|~{3,})([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$', re.M | re.S)
# Flags the test sets itself.
_OWN_FLAGS = ('--workdir', '--compilation_cache')


@dataclasses.dataclass
class Command:
  """One regjax.main command of the README."""
  text: str          # As the README shows it, on one line.
  args: list[str]    # The arguments after `regjax.main`, as the shell would pass them.
  status: int = 0    # The exit status the README documents (2 for a shown error).
  error: str = ''    # The error line the README shows ('...' stands for any text).


def _parse(line: str) -> Command | None:
  """The regjax.main command in one shell line (of a chain such as `a && b`), if any."""
  match = _COMMAND.search(line)
  if match is None:
    return None
  lexer = shlex.shlex(line[match.end():], posix=True, punctuation_chars=';&|')
  lexer.whitespace_split = True
  lexer.commenters = ''
  args, comment = [], []
  for token in lexer:
    if comment or token.startswith('#'):
      comment.append(token)
    elif set(token) <= set(';&|'):
      break  # The end of this command in a chain.
    else:
      args.append(token)
  text = ' '.join(['python -m regjax.main', *(shlex.quote(a) for a in args)])
  status = re.search(r'\bstatus (\d+)', ' '.join(comment))
  return Command(text, args, int(status[1]) if status else 0)


def _shell_lines(block: str) -> list[str]:
  """The block's lines with `\\` continuations joined and `$ ` prompts removed."""
  lines = re.sub(r'\\\n[ \t]*', ' ', block).splitlines()
  return [re.sub(r'^\s*\$\s+', '', line) for line in lines]


def extract_commands(markdown: str) -> list[Command]:
  """Every regjax.main command in `markdown`: fenced blocks (not Python), inline code."""
  commands = []
  for fence in _FENCE.finditer(markdown):
    if fence[2].strip().lower() in ('python', 'py', 'python3', 'pycon'):
      continue
    lines = _shell_lines(fence[3])
    for i, line in enumerate(lines):
      command = _parse(line)
      if command is None:
        continue
      shown = []  # Output lines the README shows below the command.
      for after in lines[i + 1:]:
        if not after.strip() or _COMMAND.search(after):
          break
        shown.append(after.strip())
      errors = [s for s in shown if s.startswith('regjax: error:')]
      if errors:
        command.error = errors[0]
        command.status = command.status or 2
      commands.append(command)
  prose = _FENCE.sub('', markdown)
  for span in re.findall(r'(?<!`)`([^`]+)`(?!`)', prose):
    command = _parse(' '.join(span.split()))
    if command is not None and command.args:  # Not a mere mention of the program.
      commands.append(command)
  return commands


def is_synopsis(command: Command) -> bool:
  """True for a usage pattern such as `[--workdir=DIR] [--config.FIELD=VALUE ...]`."""
  return any(a.startswith('[') or a.rstrip(']') == '...' for a in command.args)


def runnable_args(command: Command, workdir: str, mnist: str | None) -> list[str]:
  """The command's arguments as the test runs them (see the module docstring)."""
  out, skip_next = [], False
  for arg in command.args:
    if skip_next:
      skip_next = False
      continue
    if arg in _OWN_FLAGS:
      skip_next = True  # `--workdir DIR`: drop the value too.
      continue
    if arg.split('=', 1)[0] in _OWN_FLAGS:
      continue
    for placeholder in MNIST_PLACEHOLDERS:
      arg = arg.replace(placeholder, mnist or placeholder)
    if arg.startswith('--config=') and command.status == 0:
      file, _, options = arg[len('--config='):].partition(':')
      names = [o.split('=', 1)[0].strip() for o in options.split(',')]
      if 'smoke' not in names:
        arg = f'--config={file}:' + ','.join(['smoke'] + ([options] if options else []))
    out.append(arg)
  return out + [f'--workdir={workdir}', '--compilation_cache=']


def _readme() -> str:
  with open(os.path.join(ROOT, 'README.md')) as f:
    return f.read()


class ExtractTest(absltest.TestCase):

  SAMPLE = '\n'.join([
      'Run `python -m regjax.main --config=configs/base.py` or `python -m pytest`;',
      '`python -m regjax.main` alone names the program.',
      '```bash',
      'python3 -m venv .venv && .venv/bin/python -m regjax.main --config=configs/l2.py && ls',
      'python -m regjax.main --config=configs/l1.py \\',
      "    --variant='a:model.widths=(8, 8),optimizer.name=adamw'  # one more",
      '```',
      '  ```console',
      '  $ python -m regjax.main --config=configs/l2',
      "  regjax: error: --config='configs/l2': no such config file; did ...",
      '  $ python -m regjax.main --config=configs/l2.py --workdir /tmp/x  # exit status 3',
      '  ```',
      '```python',
      "subprocess.run('python -m regjax.main --config=configs/l2.py', shell=True)",
      '```',
      '```',
      'python -m regjax.main --config=configs/l2.py [--workdir=DIR]',
      '```',
  ])

  def test_finds_commands_in_blocks_chains_continuations_and_inline_code(self):
    commands = extract_commands(self.SAMPLE)
    self.assertEqual([c.args for c in commands], [
        ['--config=configs/l2.py'],
        ['--config=configs/l1.py', '--variant=a:model.widths=(8, 8),optimizer.name=adamw'],
        ['--config=configs/l2'],
        ['--config=configs/l2.py', '--workdir', '/tmp/x'],
        ['--config=configs/l2.py', '[--workdir=DIR]'],
        ['--config=configs/base.py'],
    ])
    self.assertEqual([c.status for c in commands], [0, 0, 2, 3, 0, 0])
    self.assertEqual(commands[2].error,
                     "regjax: error: --config='configs/l2': no such config file; did ...")
    self.assertEqual([is_synopsis(c) for c in commands], [False] * 4 + [True, False])

  def test_runnable_args_add_smoke_and_replace_workdir_cache_and_mnist(self):
    command = Command('', ['--config=configs/l2.py:dataset=mnist,data_dir=/data/mnist',
                           '--workdir', 'runs/x', '--compilation_cache=/c', '--show_config'])
    self.assertEqual(runnable_args(command, '/w', '/real/mnist'), [
        '--config=configs/l2.py:smoke,dataset=mnist,data_dir=/real/mnist', '--show_config',
        '--workdir=/w', '--compilation_cache='])
    smoke = Command('', ['--config=configs/l2.py:smoke,seeds=3'])
    self.assertEqual(runnable_args(smoke, '/w', None)[0], '--config=configs/l2.py:smoke,seeds=3')
    error = Command('', ['--config=configs/l2'], status=2)  # Run as documented.
    self.assertEqual(runnable_args(error, '/w', None)[0], '--config=configs/l2')


class ReadmeCommandsTest(absltest.TestCase):

  def test_every_command_runs_as_shown(self):
    commands = extract_commands(_readme())
    self.assertNotEmpty(commands, 'no `python -m regjax.main` command found in README.md')
    mnist = paths.mnist_dir()
    seen = set()
    for command in commands:
      key = (tuple(command.args), command.status)
      if key in seen:
        continue  # The same command shown twice (e.g. in the quickstart and results).
      seen.add(key)
      with self.subTest(command=command.text):
        if is_synopsis(command):
          self.skipTest(f'a usage pattern, not a command: {command.text}')
        if mnist is None and any(p in command.text for p in MNIST_PLACEHOLDERS):
          self.skipTest(f'needs the MNIST IDX files in {paths.mnist_search_dir()} '
                        f'(or $REGJAX_MNIST_DIR): {command.text}')
        workdir = os.path.join(tempfile.mkdtemp(), 'run')
        argv = [sys.executable, '-m', 'regjax.main',
                *runnable_args(command, workdir, mnist and str(mnist))]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        self.assertEqual(
            proc.returncode, command.status,
            f'README.md command `{command.text}` exited {proc.returncode}, the README '
            f'documents {command.status}; ran `{shlex.join(argv[1:])}`; stderr:\n'
            f'{proc.stderr[-3000:]}')
        if command.error:
          shown = proc.stderr.strip().splitlines()
          self.assertLen(shown, 1, f'`{command.text}`: {proc.stderr}')
          for part in command.error.split('...'):
            self.assertIn(part.strip(), shown[0],
                          f'README.md command `{command.text}` prints another error')


if __name__ == '__main__':
  absltest.main()
