"""bench --keep-freed-memory (deploy/malloc_policy.py): glibc serves big blocks again without page faults,
and the defaults come back after the block."""
import json
import platform
import subprocess
import sys

import pytest

from timm_recal_deploy.malloc_policy import DEFAULT_POLICY, KEPT_POLICY, keep_freed_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc malloc options')

#: a child process (the options are process-wide): minor page faults of touching a fresh 64 MiB block, with and
#: without the policy, and again after it. PyTorch allocates with posix_memalign, whose padding keeps a freed
#: block from fitting the next request until the heap has grown past it: the kept policy settles within a few
#: calls (seen: 6-8), as a model's warm-up calls do, so the faults are counted after 16 calls
CHILD = r'''
import json, resource, sys, torch
from timm_recal_deploy.malloc_policy import keep_freed_memory

def faults_of_a_big_block(mib=64):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(mib << 18)  # over glibc's largest mmap threshold (32 MiB)
    block.fill_(1.0)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

out = {}
with keep_freed_memory(sys.argv[1] == 'keep') as policy:
    for _ in range(16):
        faults_of_a_big_block()
    out['inside'] = max(faults_of_a_big_block() for _ in range(3))
    out['policy'] = policy
# after it: a block larger than the heap kept meanwhile is mmapped again on every call (were M_MMAP_MAX still
# 0, it would come from the heap and settle to no faults within these calls)
for _ in range(16):
    faults_of_a_big_block(256)
out['after'] = min(faults_of_a_big_block(256) for _ in range(3))
print(json.dumps(out))
'''


def _child(mode: str) -> dict:
    done = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kept_freed_memory_serves_a_big_block_again_without_page_faults_and_is_undone():
    pages = (64 << 20) // 4096
    kept, default = _child('keep'), _child('default')
    assert kept['policy'] == KEPT_POLICY and default['policy'] == DEFAULT_POLICY
    assert kept['inside'] < pages // 20, kept  # the freed block came back from the heap
    assert default['inside'] > pages // 2, default  # glibc's default: a fresh mapping, every page faulted
    assert kept['after'] > 4 * pages // 2, kept  # the defaults are back after the block


def test_disabled_policy_changes_nothing():
    with keep_freed_memory(False) as policy:
        assert policy == DEFAULT_POLICY


def test_the_machine_line_names_a_kept_policy_only():
    from timm_recal_deploy.report import machine_line
    assert f'malloc: {KEPT_POLICY}' in machine_line({'threads': {'malloc': KEPT_POLICY}})
    for threads in ({'malloc': DEFAULT_POLICY}, {}):  # the default, and records from before the option
        assert 'malloc' not in machine_line({'threads': threads})
