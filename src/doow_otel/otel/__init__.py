"""The OpenTelemetry adapters: conversion rules over the SDK's data; exporters for metrics,
traces and logs; baggage; zero-code setup."""
