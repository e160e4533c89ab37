import { netnsFactory } from './suite.js';
import { userspaceScenarios } from './userspace.scenarios.js';

userspaceScenarios(netnsFactory);
