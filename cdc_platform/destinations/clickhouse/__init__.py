"""ClickHouse destination (a server via clickhouse-driver, or embedded chdb): see :mod:`.sink`."""

from cdc_platform.destinations.clickhouse.client import Capabilities, ConnectionSpec
from cdc_platform.destinations.clickhouse.sink import ClickHouseDestination, Layout

__all__ = ["Capabilities", "ClickHouseDestination", "ConnectionSpec", "Layout"]
