"""README.md stays true: its Python snippet runs, and CI runs its test command."""

import os
import re
import subprocess
import sys

from absl.testing import absltest

from tests import paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
  with open(os.path.join(ROOT, 'README.md')) as f:
    return f.read()


class ReadmeTest(absltest.TestCase):

  def test_quickstart_commands_are_the_ones_ci_runs(self):
    text = readme()
    install_run = re.findall(r'^python3 -m venv \.venv && .*regjax\.main.*$', text, re.M)
    install_test = re.findall(r'^python3 -m venv \.venv && .*pytest.*$', text, re.M)
    self.assertLen(install_run, 1)
    self.assertLen(install_test, 1)
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
      ci = f.read()
    # .ci/run greps this exact line out of the README and runs it.
    self.assertIn("grep -m1 '^python3 -m venv .venv && .*pytest' README.md", ci)

  def test_mnist_one_epoch_snippet_runs(self):
    mnist = paths.mnist_dir()
    if mnist is None:
      self.skipTest(f'MNIST IDX files not found at {paths.mnist_search_dir()}; '
                    'set REGJAX_MNIST_DIR')
    match = re.search(r'<!-- snippet: mnist-one-epoch -->\s*```python\n(.*?)```', readme(),
                      re.S)
    self.assertIsNotNone(match, 'the README lost its MNIST snippet')
    code = match.group(1)
    self.assertIn("'/path/to/mnist'", code)
    code = code.replace("'/path/to/mnist'", repr(str(mnist)))
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    accuracy = float(re.search(r'test accuracy after 1 epoch: ([0-9.]+)', proc.stdout)[1])
    # One epoch of the notebook MLP on MNIST reaches about 94-96%; chance is 10%.
    self.assertGreater(accuracy, 0.92)


if __name__ == '__main__':
  absltest.main()
