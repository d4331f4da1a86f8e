"""experiments/colab_tpu.ipynb: its code cells run on the CPU (smoke size).

Cells tagged `colab-only` (and starting with a `# colab-only` comment) hold the shell
install; they are checked for what they install and skipped. The rest run as one script
in a child process, as the notebook's kernel would run them in order.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab_tpu.ipynb')
COLAB_ONLY = 'colab-only'


def _cells():
  with open(NOTEBOOK, encoding='utf-8') as f:
    notebook = json.load(f)
  return notebook, [(c, ''.join(c['source'])) for c in notebook['cells']]


def _colab_only(cell) -> bool:
  return COLAB_ONLY in cell.get('metadata', {}).get('tags', [])


class ColabNotebookTest(absltest.TestCase):

  def test_install_cells_are_marked_and_install_from_the_repository(self):
    notebook, cells = _cells()
    self.assertEqual(notebook['nbformat'], 4)
    install = [src for cell, src in cells if _colab_only(cell)]
    self.assertLen(install, 1)
    self.assertTrue(install[0].startswith('# colab-only'))
    self.assertIn('git clone', install[0])
    self.assertIn('pip install -q -e /content/regjax', install[0])
    self.assertIn('jax[tpu]', install[0])
    # Every shell or magic line sits in a marked cell, so the rest is plain Python.
    for cell, src in cells:
      if cell['cell_type'] == 'code' and not _colab_only(cell):
        for line in src.splitlines():
          self.assertFalse(line.lstrip().startswith(('!', '%')), line)
        compile(src, 'cell', 'exec')
      self.assertEqual(cell.get('outputs', []), [])  # Committed without outputs.

  def test_code_cells_run_a_smoke_comparison_on_cpu(self):
    _, cells = _cells()
    code = '\n\n'.join(src for cell, src in cells
                       if cell['cell_type'] == 'code' and not _colab_only(cell))
    with tempfile.TemporaryDirectory() as tmp:
      env = dict(os.environ, REGJAX_NOTEBOOK_CONFIG_ARG='smoke', MPLBACKEND='Agg',
                 TMPDIR=tmp, JAX_PLATFORMS='cpu',
                 PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
      proc = subprocess.run([sys.executable, '-c', code], cwd=os.path.join(ROOT, 'experiments'),
                            env=env, capture_output=True, text=True, timeout=300)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      out = proc.stdout
      self.assertIn('backend: cpu', out)
      self.assertIn('No TPU here', out)
      self.assertIn(f'repository: {ROOT}', out)
      # The table lists every variant of configs/l2.py, each tuned on validation.
      for variant in ('baseline', 'l2', 'decay'):
        self.assertRegex(out, rf'\n{variant} +\d+\.\d\d ± ')
      self.assertIn('Chosen per replicate on validation', out)
      workdirs = [d for d in os.listdir(tmp) if d.startswith('regjax-l2-')]
      self.assertLen(workdirs, 1)
      with open(os.path.join(tmp, workdirs[0], 'results.json')) as f:
        records = json.load(f)['records']
      self.assertLen(records, 3 * 2)  # 3 variants x 2 smoke replicates, one chosen point each.
      self.assertTrue(os.path.isfile(os.path.join(tmp, workdirs[0], 'curves.png')))
      self.assertNotEmpty(os.listdir(os.path.join(tmp, 'regjax-jax-cache')))


if __name__ == '__main__':
  absltest.main()
