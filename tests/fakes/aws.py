"""AWS for tests: moto's server on a loopback port, and helpers that set up Lambda functions.

Everything here talks to moto over HTTP with real boto3 clients, exactly as the bot does, so a
test exercises the same requests a real AWS account would receive.

    with running_moto() as moto:
        create_lambda_function(moto.env, function="thumbnails", alias="live",
                               artifact="s3://artifacts/thumbnails/{version}.zip", version="v1")
        target = make_target(config, service="thumbnails", environment="prod", env=moto.env)
"""

from __future__ import annotations

import functools
import io
import json
import logging
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

__all__ = [
    "REGION",
    "LambdaFunction",
    "MotoServer",
    "aws_client",
    "create_lambda_function",
    "create_lambda_role",
    "lambda_zip",
    "moto_env",
    "put_artifact",
    "running_moto",
    "split_artifact",
]

REGION = "eu-central-1"
ROLE_NAME = "opsbot-test-lambda"
_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its URL and the environment that points boto3 at it."""

    endpoint_url: str
    env: dict[str, str] = field(default_factory=dict)


def moto_env(endpoint_url: str, *, region: str = REGION) -> dict[str, str]:
    """The environment a target gets: endpoint, region and dummy credentials (moto takes any)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


@contextmanager
def running_moto(*, region: str = REGION) -> Iterator[MotoServer]:
    """Start moto's server on a free loopback port for the block; one server serves all tests."""
    # werkzeug logs every request to stderr; test output should show failures, not traffic.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        yield MotoServer(endpoint_url=endpoint_url, env=moto_env(endpoint_url, region=region))
    finally:
        server.stop()


def aws_client(env: Mapping[str, str], service: str) -> Any:
    """A boto3 client for `service` pointed at the endpoint in `env` (never at real AWS)."""
    return _client(env["AWS_ENDPOINT_URL"], env["AWS_REGION"], service)


@functools.cache
def _client(endpoint_url: str, region: str, service: str) -> Any:
    # Cached: building a client parses its API model (~0.1 s), and tests make many calls.
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    return session.client(service, endpoint_url=endpoint_url)


def lambda_zip(version: str) -> bytes:
    """A small deployment package whose content differs per version (so its CodeSha256 does)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "handler.py", f"def handle(event, context):\n    return {{'version': {version!r}}}\n"
        )
    return buffer.getvalue()


def split_artifact(artifact: str, version: str) -> tuple[str, str]:
    """`s3://bucket/key/{version}.zip` and `v2` -> ("bucket", "key/v2.zip")."""
    bucket, _, key = artifact.format(version=version).removeprefix("s3://").partition("/")
    return bucket, key


def create_lambda_role(env: Mapping[str, str]) -> str:
    """The execution role Lambda functions need (moto refuses a function without it); its ARN."""
    iam = aws_client(env, "iam")
    try:
        return iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=_ASSUME_ROLE_POLICY)
        return role["Role"]["Arn"]


def put_artifact(env: Mapping[str, str], artifact: str, version: str) -> tuple[str, str]:
    """Upload the package of `version` where the catalog's artifact template says; (bucket, key)."""
    s3 = aws_client(env, "s3")
    bucket, key = split_artifact(artifact, version)
    existing = {entry["Name"] for entry in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": env["AWS_REGION"]}
        )
    s3.put_object(Bucket=bucket, Key=key, Body=lambda_zip(version))
    return bucket, key


@dataclass(frozen=True)
class LambdaFunction:
    """A function set up by `create_lambda_function`: the alias points at `version_number`."""

    function: str
    alias: str
    version: str  # the opsbot version, the published version's Description
    version_number: str  # the Lambda version number, e.g. "1"


def create_lambda_function(
    env: Mapping[str, str], *, function: str, alias: str, artifact: str, version: str = "v1"
) -> LambdaFunction:
    """A function deployed at `version` the way opsbot would leave it: published, alias on it."""
    role_arn = create_lambda_role(env)
    bucket, key = put_artifact(env, artifact, version)
    client = aws_client(env, "lambda")
    client.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Role=role_arn,
        Handler="handler.handle",
        Code={"S3Bucket": bucket, "S3Key": key},
    )
    published = client.publish_version(FunctionName=function, Description=version)
    client.create_alias(FunctionName=function, Name=alias, FunctionVersion=published["Version"])
    return LambdaFunction(
        function=function, alias=alias, version=version, version_number=published["Version"]
    )
