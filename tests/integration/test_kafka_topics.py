"""Our topics take records far over Kafka's 1 MiB default: snapshots and day-close batches."""

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mockex import names


async def test_topics_accept_and_return_multi_megabyte_records(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    payload = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=names.MAX_RECORD_BYTES
    )
    await producer.start()
    try:
        await producer.send_and_wait(topics["snapshots"], payload, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        fetch_max_bytes=names.MAX_RECORD_BYTES,
        max_partition_fetch_bytes=names.MAX_RECORD_BYTES,
    )
    await consumer.start()
    try:
        partition = TopicPartition(topics["snapshots"], 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.value == payload
