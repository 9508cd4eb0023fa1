"""memory.job_heap: the collections a job starts scan only what the job made, and the caller's heap is
as it was afterwards (unfrozen, its garbage collectable)."""

import gc
import weakref

import pytest

from leadscore.memory import job_heap, release_memory


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic garbage collector frees it


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_made_before_the_job_are_out_of_its_collections_and_collected_after(unfrozen):
    before = Node()
    gone_before = weakref.ref(before)
    del before  # garbage, but made before the job: frozen with the rest of the heap
    with job_heap():
        assert gc.get_freeze_count() > 0
        made = Node()
        gone_made = weakref.ref(made)
        del made
        release_memory()
        assert gone_made() is None  # the job's own garbage is collected by the job's collections
        assert gone_before() is not None  # the caller's is not scanned
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone_before() is None  # and is collected once the job is over


def test_the_heap_is_unfrozen_after_a_failing_job(unfrozen):
    with pytest.raises(RuntimeError), job_heap():
        raise RuntimeError("the job failed")
    assert gc.get_freeze_count() == 0


def test_a_nested_job_and_a_caller_that_froze_the_heap_keep_it_frozen(unfrozen):
    with job_heap():
        with job_heap():
            pass
        assert gc.get_freeze_count() > 0  # the inner block did not unfreeze the outer one's heap
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a caller (a one-shot process) that froze its heap itself
    frozen = gc.get_freeze_count()
    with job_heap():
        pass
    assert gc.get_freeze_count() >= frozen > 0
