"""Glue between the library's samplers and training frameworks, one module per framework.

Each module imports its framework, so import only the one you use
(``dsampling_ext.integrations.accelerate``); ``import dsampling_ext`` imports none of them.
"""
