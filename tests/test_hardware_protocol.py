"""The station protocol's pure encode/decode: CRC, framing, resynchronisation, message codecs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.protocol import (
    MAX_PAYLOAD,
    Ack,
    AckStatus,
    DecodeErrorKind,
    Divert,
    Frame,
    Heartbeat,
    ItemEntered,
    ItemExited,
    MsgType,
    ProtocolError,
    StreamDecoder,
    crc16_ccitt_false,
    decode_frame,
    decode_stream,
    encode_frame,
    encode_message,
    parse_message,
)

frames = st.builds(Frame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=MAX_PAYLOAD))


def test_crc_matches_the_published_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_any_byte_stream_never_crashes_the_decoder(data):
    dec = StreamDecoder()
    for i in range(0, len(data), 7):
        dec.feed(data[i:i + 7])
    assert dec.pending() <= MAX_PAYLOAD + 7


@given(frames)
def test_every_valid_frame_round_trips(frame):
    assert decode_frame(encode_frame(frame.seq, frame.type, frame.payload)) == frame


@given(st.lists(frames, min_size=1, max_size=5), st.binary(max_size=60), st.integers(1, 50))
def test_frames_are_recovered_after_garbage_in_any_chunking(fs, garbage, chunk):
    stream = garbage + b"".join(encode_frame(f.seq, f.type, f.payload) for f in fs)
    dec = StreamDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i:i + chunk])[0]
    assert got[-len(fs):] == fs


@given(frames, st.data())
def test_single_byte_corruption_is_detected(frame, data):
    raw = bytearray(encode_frame(frame.seq, frame.type, frame.payload))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    got, errors, _ = decode_stream(bytes(raw))
    assert frame not in got
    assert errors  # the damage is reported (garbage, bad header or bad CRC), not silently waited on


def test_corrupted_frame_is_skipped_and_the_next_one_decoded():
    good = encode_frame(7, MsgType.DIVERT, Divert(42, 3).payload())
    bad = bytearray(encode_frame(6, MsgType.DIVERT, Divert(41, 2).payload()))
    bad[-1] ^= 0x01
    got, errors, rest = decode_stream(bytes(bad) + good)
    assert [parse_message(f) for f in got] == [Divert(42, 3)]
    assert DecodeErrorKind.BAD_CRC in {e.kind for e in errors}
    assert rest == b""


@pytest.mark.parametrize("msg", [
    Ack(5, AckStatus.TOO_LATE), Divert(2**32 - 1, 6), Heartbeat(123456, True, False, True, 500),
    ItemEntered(9, 1000, 50, "RMA1;o=ORD-1;s=BTL;r=no_reason_7day;x=ünïcode"), ItemExited(9, 0, 2000, True),
])
def test_messages_round_trip_through_frames(msg):
    assert parse_message(decode_frame(encode_message(200, msg))) == msg


def test_malformed_input_gives_clear_errors():
    with pytest.raises(ProtocolError, match="payload"):
        parse_message(Frame(1, MsgType.DIVERT, b"\x00"))
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse_message(Frame(1, 0xEE, b""))
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frame(1, MsgType.DIVERT, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ProtocolError):
        decode_frame(b"\x02\x05")
