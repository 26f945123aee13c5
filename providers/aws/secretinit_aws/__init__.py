"""AWS Secrets Manager (``aws-sm://``) and SSM Parameter Store (``aws-ssm://``) for secretinit.

Both schemes read the ``[providers.aws]`` table and take credentials, region
and endpoints from boto3's own chains. See the README of ``secretinit-aws``.
"""

from secretinit_aws._secretsmanager import SecretsManagerProvider
from secretinit_aws._ssm import ParameterStoreProvider

__version__ = "0.1.0"

__all__ = ["ParameterStoreProvider", "SecretsManagerProvider", "__version__"]
