import {main} from './main.js'
import {post} from './post.js'
import {isPost} from './state.js'

// One bundle for both steps: the runner sets saved state only for post.
await (isPost() ? post() : main())
