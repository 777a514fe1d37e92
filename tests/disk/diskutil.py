"""diskutil.py: helpers for the disk tool tests (cella disk vs qemu-img)."""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def args():
    p = argparse.ArgumentParser()
    p.add_argument('--cella', required=True)
    p.add_argument('--disk-io', default=None)
    return p.parse_args()


def need_qemu():
    for tool in ('qemu-img', 'qemu-io'):
        if not shutil.which(tool):
            print(f'SKIP: {tool} is not installed (Debian package qemu-utils)')
            sys.exit(SKIP)


def run(*cmd, check=True, input=None, timeout=300):
    r = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}')
    return r


class Env:
    def __init__(self, cella):
        self.cella = cella
        self.dir = tempfile.mkdtemp(prefix='cella-disk-')
        self.failures = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    def disk(self, *a, check=True):
        return run(self.cella, 'disk', *a, check=check)

    def qio(self, img, *cmds, fmt='qcow2'):
        argv = ['qemu-io', '-f', fmt]
        for c in cmds:
            argv += ['-c', c]
        return run(*argv, img)

    def qemu_raw(self, img, name):
        out = self.path(name)
        run('qemu-img', 'convert', '-O', 'raw', img, out)
        return out

    def cella_raw(self, img, name):
        out = self.path(name)
        self.disk('convert', '-O', 'raw', img, out)
        return out

    def same_file(self, a, b):
        with open(a, 'rb') as fa, open(b, 'rb') as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True

    def qemu_check_clean(self, img):
        r = run('qemu-img', 'check', img, check=False)
        assert r.returncode == 0 and 'No errors were found' in r.stdout, \
            f'qemu-img check {img}: rc {r.returncode}\n{r.stdout}{r.stderr}'

    def compare(self, a, b):
        r = run('qemu-img', 'compare', a, b, check=False)
        assert r.returncode == 0, f'qemu-img compare {a} {b}: {r.stdout}{r.stderr}'

    def case(self, name, fn):
        try:
            fn()
            print(f'ok   {name}')
        except Exception as e:  # report every case, fail at the end
            self.failures += 1
            print(f'FAIL {name}: {e}')

    def finish(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        print('FAILED' if self.failures else 'PASSED')
        sys.exit(1 if self.failures else 0)


def random_writes(rng, size, n, maxlen=200000):
    """(offset, length, byte) triples for qemu-io / our writer."""
    out = []
    for _ in range(n):
        ln = rng.randrange(1, maxlen)
        off = rng.randrange(0, size - ln)
        out.append((off, ln, rng.randrange(1, 256)))
    return out
