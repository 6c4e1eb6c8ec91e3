"""prik's partitioner puts every key on the partition aiokafka's default would, and stays bounded."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from prik import partitioning
from prik.kafka import make_producer
from prik.partitioning import KeyPartitioner, murmur2
from prik.settings import KafkaSettings


def test_murmur2_equals_aiokafkas_for_every_length_and_byte() -> None:
    rng = random.Random(7)
    for length in range(70):
        for _ in range(50):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key)
    # Java's reference value (org.apache.kafka.common.utils.UtilsTest.testMurmur2).
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF


def test_the_same_partition_as_aiokafkas_default_for_clinics_and_ids() -> None:
    rng = random.Random(11)
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    keys = [str(100000000000 + i).encode() for i in range(300)]
    keys += [str(rng.getrandbits(128)).encode() for _ in range(300)]
    for count in (1, 3, 6, 7):
        partitions = list(range(count))
        for key in keys * 2:  # the second time from the cache
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    ours = KeyPartitioner()
    assert {ours(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert {ours(None, [0, 1, 2], []) for _ in range(50)} <= {0, 1, 2}


def test_the_cache_stays_bounded() -> None:
    ours = KeyPartitioner()
    for i in range(partitioning._CACHE_SIZE * 3):
        ours(f"id-{i}".encode(), [0, 1, 2], [0, 1, 2])
    assert len(ours._hashes) <= partitioning._CACHE_SIZE


async def test_every_producer_of_the_factory_uses_it() -> None:
    producer = make_producer(KafkaSettings(bootstrap="127.0.0.1:1"))
    try:
        assert isinstance(producer._partitioner, KeyPartitioner)
    finally:
        await producer.stop()
